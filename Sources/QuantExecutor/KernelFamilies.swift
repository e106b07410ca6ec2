/// The operator families; each lives in `Kernels/<Family>.swift` and lists its operators as
/// `Op` (default domain) or `domain::Op`.
enum KernelFamilies {
    static let all: [[String: KernelFactory]] = [
        ElementwiseKernels.all,
        ShapeKernels.all,
        IndexingKernels.all,
        ReductionKernels.all,
        ConvolutionKernels.all,
        MatrixKernels.all,
        NormalizationKernels.all,
        PoolingKernels.all,
        ResizeKernels.all,
        GridSampleKernels.all,
        SpectralKernels.all,
        TransformerKernels.all,
        ContribKernels.all,
        LossKernels.all,
        ControlFlowKernels.all,
        RecurrentKernels.all,
        QuantizationKernels.all,
    ]
}
