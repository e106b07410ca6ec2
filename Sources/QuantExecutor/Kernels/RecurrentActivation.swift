import Foundation

/// An activation function of the recurrent operators (ONNX RNN/GRU/LSTM `activations`), with
/// its `activation_alpha`/`activation_beta` bound.
struct RecurrentActivation {
    enum Kind: String {
        case relu, tanh, sigmoid, affine, leakyrelu, thresholdedrelu, scaledtanh, hardsigmoid, elu, softsign, softplus
    }

    let kind: Kind
    let alpha: Float
    let beta: Float

    static let sigmoid = RecurrentActivation(kind: .sigmoid, alpha: 0, beta: 0)
    static let tanh = RecurrentActivation(kind: .tanh, alpha: 0, beta: 0)

    /// Parses `names` (case-insensitive), consuming alphas and betas in order by the functions
    /// that take them; missing ones get the ONNX defaults.
    static func parse(_ names: [String], alphas: [Float], betas: [Float], ctx: KernelContext) throws -> [RecurrentActivation] {
        var ai = 0, bi = 0
        func next(_ list: [Float], _ i: inout Int, _ fallback: Float) -> Float {
            defer { i += 1 }
            return i < list.count ? list[i] : fallback
        }
        return try names.map { name in
            guard let kind = Kind(rawValue: name.lowercased()) else { throw ctx.unsupported("activation '\(name)'") }
            switch kind {
            case .affine: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 1), beta: next(betas, &bi, 0))
            case .leakyrelu: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 0.01), beta: 0)
            case .thresholdedrelu: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 1), beta: 0)
            case .scaledtanh: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 1), beta: next(betas, &bi, 1))
            case .hardsigmoid: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 0.2), beta: next(betas, &bi, 0.5))
            case .elu: return RecurrentActivation(kind: kind, alpha: next(alphas, &ai, 1), beta: 0)
            default: return RecurrentActivation(kind: kind, alpha: 0, beta: 0)
            }
        }
    }

    /// Applies the function in place to `count` floats at `p`.
    func apply(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        let a = alpha, b = beta
        switch kind {
        case .relu: for i in 0..<count { p[i] = max(p[i], 0) }
        case .tanh: for i in 0..<count { p[i] = Foundation.tanh(p[i]) }
        case .sigmoid: for i in 0..<count { p[i] = 1 / (1 + exp(-p[i])) }
        case .affine: for i in 0..<count { p[i] = a * p[i] + b }
        case .leakyrelu: for i in 0..<count { p[i] = p[i] >= 0 ? p[i] : a * p[i] }
        case .thresholdedrelu: for i in 0..<count { p[i] = p[i] > a ? p[i] : 0 }
        case .scaledtanh: for i in 0..<count { p[i] = a * Foundation.tanh(b * p[i]) }
        case .hardsigmoid: for i in 0..<count { p[i] = max(0, min(1, a * p[i] + b)) }
        case .elu: for i in 0..<count { p[i] = p[i] >= 0 ? p[i] : a * (exp(p[i]) - 1) }
        case .softsign: for i in 0..<count { p[i] = p[i] / (1 + abs(p[i])) }
        case .softplus: for i in 0..<count { p[i] = p[i] > 20 ? p[i] : log1p(exp(p[i])) }
        }
    }
}
