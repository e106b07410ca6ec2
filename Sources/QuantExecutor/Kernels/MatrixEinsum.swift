import QuantCore
import QuantIR

/// `Einsum` (opset 12+): any equation of letters and one `...` per term, with repeated
/// letters (diagonals), broadcasting of ellipsis dimensions and implicit output (ellipsis
/// dimensions, then letters used once, in alphabetical order, as numpy does).
///
/// Two-operand contractions without diagonals or one-sided sums ("ij,jk->ik",
/// "bij,bjk->bik", "bhqd,bhkd->bhqk", ...) run as batched GEMM; every other form is evaluated
/// as a direct sum over the reduced labels for each output element.
final class EinsumKernel: Kernel {
    let ctx: KernelContext
    /// Per operand: its letters (the ellipsis removed; see `ellipsisPosition`).
    let terms: [[Character]]
    let ellipsisInTerm: [Bool]
    let output: [Character]?
    let outputHasEllipsis: Bool

    init(_ ctx: KernelContext) throws {
        self.ctx = ctx
        let eq = ctx.string("equation", "").filter { !$0.isWhitespace }
        let sides = eq.components(separatedBy: "->")
        guard sides.count <= 2 else { throw ctx.invalid("equation '\(eq)' has more than one '->'") }
        var terms: [[Character]] = []
        var ell: [Bool] = []
        for t in sides[0].split(separator: ",", omittingEmptySubsequences: false) {
            let s = String(t)
            let parts = s.components(separatedBy: "...")
            guard parts.count <= 2 else { throw ctx.invalid("term '\(s)' has more than one ellipsis") }
            terms.append(Array(parts.joined(separator: "")))
            ell.append(parts.count == 2)
        }
        self.terms = terms
        ellipsisInTerm = ell
        if sides.count == 2 {
            let parts = sides[1].components(separatedBy: "...")
            output = Array(parts.joined(separator: ""))
            outputHasEllipsis = parts.count == 2
        } else {
            output = nil
            outputHasEllipsis = true
        }
        for c in terms.flatMap({ $0 }) + (output ?? []) where !c.isLetter {
            throw ctx.invalid("equation '\(eq)' uses '\(c)', which is not a letter")
        }
        // Remember where each ellipsis sits inside its term.
        var ellPos: [Int] = []
        for t in sides[0].split(separator: ",", omittingEmptySubsequences: false) {
            let s = String(t)
            ellPos.append(s.range(of: "...").map { s.distance(from: s.startIndex, to: $0.lowerBound) } ?? -1)
        }
        ellipsisPosition = ellPos
        if sides.count == 2, let r = sides[1].range(of: "...") {
            outputEllipsisPosition = sides[1].distance(from: sides[1].startIndex, to: r.lowerBound)
        } else {
            outputEllipsisPosition = 0
        }
    }

    let ellipsisPosition: [Int]
    let outputEllipsisPosition: Int

    static func make(_ ctx: KernelContext) throws -> Kernel { try EinsumKernel(ctx) }

    func run(_ inputs: [Tensor?], _ env: RunEnvironment) throws -> [Tensor?] {
        guard inputs.count == terms.count else {
            throw ctx.invalid("equation has \(terms.count) operands but the node has \(inputs.count) inputs")
        }
        let ops = try inputs.enumerated().map { try MatrixKernels.floatInput($0.element, ctx, "Inputs[\($0.offset)]") }
        // Labels as Ints: letters by their scalar value, ellipsis dimension k as 1000 + k
        // (right-aligned across operands).
        var ellRank = 0
        for (i, t) in terms.enumerated() {
            let extra = ops[i].rank - t.count
            guard extra >= 0, extra == 0 || ellipsisInTerm[i] else {
                throw ctx.invalid("operand \(i) of shape \(ops[i].shape) does not fit term '\(String(t))'")
            }
            ellRank = max(ellRank, extra)
        }
        var labelsOf: [[Int]] = []
        var sizes: [Int: Int] = [:]
        var counts: [Int: Int] = [:]
        for (i, t) in terms.enumerated() {
            let letters = t.map { Int($0.unicodeScalars.first!.value) }
            let extra = ops[i].rank - t.count
            var labels: [Int] = []
            if ellipsisInTerm[i] {
                let p = ellipsisPosition[i]
                labels = Array(letters[..<p]) + (0..<extra).map { 1000 + ellRank - extra + $0 } + Array(letters[p...])
            } else {
                labels = letters
            }
            for (d, l) in labels.enumerated() {
                let s = ops[i].shape[d]
                if let old = sizes[l], old != s {
                    if l >= 1000 && (old == 1 || s == 1) { sizes[l] = max(old, s) } else {
                        throw ctx.invalid("label sizes disagree: \(old) vs \(s) in operand \(i) \(ops[i].shape)")
                    }
                } else if sizes[l] == nil { sizes[l] = s }
                if l < 1000 { counts[l, default: 0] += 1 }
            }
            labelsOf.append(labels)
        }
        let ellLabels = (0..<ellRank).map { 1000 + $0 }
        var outLabels: [Int]
        if let output {
            let letters = output.map { Int($0.unicodeScalars.first!.value) }
            if outputHasEllipsis {
                outLabels = Array(letters[..<outputEllipsisPosition]) + ellLabels + Array(letters[outputEllipsisPosition...])
            } else {
                outLabels = letters
            }
            for l in outLabels where sizes[l] == nil {
                if l >= 1000 { sizes[l] = 1 } else { throw ctx.invalid("output label \(Character(UnicodeScalar(l)!)) is not in any input") }
            }
        } else {
            outLabels = ellLabels + counts.filter { $0.value == 1 }.keys.sorted()
        }
        let outSet = Set(outLabels)
        let redLabels = sizes.keys.filter { !outSet.contains($0) }.sorted()
        let outShape = outLabels.map { sizes[$0]! }
        let redShape = redLabels.map { sizes[$0]! }
        // Per operand, the element stride of each output / reduced label (0 when absent or broadcast).
        func strides(_ i: Int, _ labels: [Int]) -> [Int] {
            let s = Shapes.strides(ops[i].shape)
            return labels.map { l in
                var acc = 0
                for (d, x) in labelsOf[i].enumerated() where x == l && ops[i].shape[d] != 1 { acc += s[d] }
                return acc
            }
        }
        if ops.count == 2, let y = contractWithGEMM(ops, labelsOf, outLabels, sizes, strides, threads: env.threads) {
            return [y]
        }
        let outStr = (0..<ops.count).map { strides($0, outLabels) }
        let redStr = (0..<ops.count).map { strides($0, redLabels) }
        let redCount = Tensor.elementCount(redShape)
        let outCount = Tensor.elementCount(outShape)
        let outDims = Shapes.strides(outShape)
        let redDims = Shapes.strides(redShape)
        let nOps = ops.count
        let ptrs = ops.map { $0.storage.pointer.assumingMemoryBound(to: Float.self) }
        let y = Tensor.makeFloat(outShape) { out in
            parallelFor(outCount, threads: env.threads, grain: max(1, 4096 / max(redCount, 1))) { r in
                var base = [Int](repeating: 0, count: nOps)
                var off = [Int](repeating: 0, count: nOps)
                for o in r {
                    var rem = o
                    for k in 0..<nOps { base[k] = 0 }
                    for d in 0..<outDims.count {
                        let idx = rem / outDims[d]
                        rem %= outDims[d]
                        for k in 0..<nOps { base[k] += idx * outStr[k][d] }
                    }
                    var sum: Float = 0
                    for j in 0..<redCount {
                        var rj = j
                        for k in 0..<nOps { off[k] = base[k] }
                        for d in 0..<redDims.count {
                            let idx = rj / redDims[d]
                            rj %= redDims[d]
                            for k in 0..<nOps { off[k] += idx * redStr[k][d] }
                        }
                        var p: Float = 1
                        for k in 0..<nOps { p *= ptrs[k][off[k]] }
                        sum += p
                    }
                    out[o] = sum
                }
            }
        }
        return [y]
    }

    /// Two-operand contractions without diagonals or broadcasting, as batched GEMM:
    /// labels split into batch (both inputs and the output), m (A and output), n (B and
    /// output) and k (both inputs, summed). A is gathered to [batch, m, k], B to
    /// [batch, k, n], and the product scattered into the output's label order. Returns nil
    /// for other forms (the direct sum handles them).
    func contractWithGEMM(_ ops: [Tensor], _ labelsOf: [[Int]], _ outLabels: [Int], _ sizes: [Int: Int],
                          _ strides: (Int, [Int]) -> [Int], threads: Int) -> Tensor? {
        let la = labelsOf[0], lb = labelsOf[1]
        guard Set(la).count == la.count, Set(lb).count == lb.count, Set(outLabels).count == outLabels.count else { return nil }
        for (i, l) in la.enumerated() where ops[0].shape[i] != sizes[l] { return nil }
        for (i, l) in lb.enumerated() where ops[1].shape[i] != sizes[l] { return nil }
        let sa = Set(la), sb = Set(lb), so = Set(outLabels)
        guard sa.union(sb) == sa.union(sb).union(so), sa.union(sb).isSuperset(of: so) else { return nil }
        let batch = outLabels.filter { sa.contains($0) && sb.contains($0) }
        let mL = outLabels.filter { sa.contains($0) && !sb.contains($0) }
        let nL = outLabels.filter { sb.contains($0) && !sa.contains($0) }
        let kL = la.filter { sb.contains($0) && !so.contains($0) }
        // Every label must be classified (no label summed within one operand only).
        guard batch.count + mL.count + kL.count == la.count, batch.count + nL.count + kL.count == lb.count else { return nil }
        func count(_ ls: [Int]) -> Int { ls.reduce(1) { $0 * sizes[$1]! } }
        let bt = count(batch), m = count(mL), n = count(nL), k = count(kL)
        let a = EinsumKernel.gather(ops[0], strides(0, batch + mL + kL), batch + mL + kL, sizes)
        let b = EinsumKernel.gather(ops[1], strides(1, batch + kL + nL), batch + kL + nL, sizes)
        var product = [Float](repeating: 0, count: bt * m * n)
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                product.withUnsafeMutableBufferPointer { cp in
                    for i in 0..<bt where m > 0 && n > 0 {
                        if k == 0 { continue }
                        MatrixGEMM.sgemm(m: m, n: n, k: k, a: ap.baseAddress! + i * m * k, lda: k, b: bp.baseAddress! + i * k * n, ldb: n,
                                         c: cp.baseAddress! + i * m * n, ldc: n, threads: threads)
                    }
                }
            }
        }
        // The product's labels are batch + m + n; reorder to the output's.
        let prodLabels = batch + mL + nL
        let prodStrides = Shapes.strides(prodLabels.map { sizes[$0]! })
        let outShape = outLabels.map { sizes[$0]! }
        let src = outLabels.map { l in prodStrides[prodLabels.firstIndex(of: l)!] }
        let full = Shapes.strides(outShape)
        return Tensor.makeFloat(outShape) { out in
            for i in 0..<out.count {
                var rem = i, off = 0
                for d in 0..<outShape.count { off += (rem / full[d]) * src[d]; rem %= full[d] }
                out[i] = product[off]
            }
        }
    }

    /// The elements of `t` in the order of `labels` (row-major over their sizes), read with
    /// `strides` (one per label).
    static func gather(_ t: Tensor, _ strides: [Int], _ labels: [Int], _ sizes: [Int: Int]) -> [Float] {
        let shape = labels.map { sizes[$0]! }
        let full = Shapes.strides(shape)
        let count = Tensor.elementCount(shape)
        let p = t.storage.pointer.assumingMemoryBound(to: Float.self)
        var out = [Float](repeating: 0, count: count)
        for i in 0..<count {
            var rem = i, off = 0
            for d in 0..<shape.count { off += (rem / full[d]) * strides[d]; rem %= full[d] }
            out[i] = p[off]
        }
        return out
    }
}
