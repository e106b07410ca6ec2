import QuantCore

/// Plan-time evaluation of small steps that read only constants, for the fused step list.
///
/// Exporters compute attributes at run time from constants: EfficientNet-Lite0's 17 TF-style
/// pads are each ConstantOfShape, Concat, Reshape, Slice, Transpose, Reshape and Cast of
/// constants (~100 steps, ~5 % of a batch-1 run). Such a step runs once when the plan is built
/// and its outputs become constants of the plan; later such steps then see them as constants
/// too. Only for runs without hooks: the plain step list keeps every step, so hooks still see
/// (and may replace) these values.
///
/// Not folded: steps with subgraphs, random generators, steps whose inputs or outputs exceed
/// `maxBytes` (large tensors stay computed per run instead of held by the plan), and steps
/// whose kernel throws at plan time (the error then surfaces at run time as before).
enum ConstantFolding {
    static let maxBytes = 16 * 1024

    /// `steps` without the folded ones; their outputs are added to `constants`.
    static func fold(_ steps: [GraphPlan.Step], _ constants: inout [Int: Tensor], options: ExecutorOptions) -> [GraphPlan.Step] {
        var kept: [GraphPlan.Step] = []
        for s in steps {
            guard s.node.subgraphs.isEmpty, !KernelRegistry.randomOps.contains(s.node.opType), !s.outputs.contains(where: { $0 < 0 }),
                  s.inputs.allSatisfy({ $0 < 0 || constants[$0].map { $0.byteCount <= maxBytes } == true }),
                  let outputs = try? s.kernel.run(s.inputs.map { $0 < 0 ? nil : constants[$0] }, RunEnvironment.compileTime(options)),
                  outputs.count == s.outputs.count,
                  outputs.allSatisfy({ $0 != nil && $0!.dtype != .string && $0!.byteCount <= maxBytes })
            else {
                kept.append(s)
                continue
            }
            for (id, t) in zip(s.outputs, outputs) { constants[id] = t }
        }
        return kept
    }
}

extension KernelRegistry {
    /// Operators whose outputs are random: never computed ahead of a run (plan-time folding
    /// here, static folding before quantization).
    public static let randomOps: Set<String> = ["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"]
}
