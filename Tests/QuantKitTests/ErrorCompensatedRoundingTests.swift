import Foundation
import QuantKit
import Testing

private func gaussian(_ rng: inout SplitMix64) -> Double {
    let u = Double.random(in: Double.ulpOfOne..<1, using: &rng), v = Double.random(in: 0..<1, using: &rng)
    return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
}

/// ‖(W − Ŵ)·X‖² for W, Ŵ [rows × k] and X [k × n].
private func outputError(_ w: [Float], _ q: [Float], _ x: [Double], rows: Int, k: Int, n: Int) -> Double {
    var e = 0.0
    for r in 0..<rows {
        for c in 0..<n {
            var s = 0.0
            for i in 0..<k { s += Double(w[r * k + i] - q[r * k + i]) * x[i * n + c] }
            e += s * s
        }
    }
    return e
}

@Test func identityHessianRoundsToNearest() throws {
    // H = I: no column predicts another, so nothing is compensated: round half to even per weight.
    let k = 4, rows = 2
    let w: [Float] = [0.26, -0.74, 0.5, 1.27, -1.0, 0.125, 0.37, 0.88]
    var h = [Double](repeating: 0, count: k * k)
    for i in 0..<k { h[i * k + i] = 1 }
    let q = try #require(ErrorCompensatedRounding.round(w, rows: rows, hessian: WeightHessian(k: k, rowAxis: 0, matrices: [h]),
                                                        groupOfRow: { _ in 0 }, scales: [0.5, 0.25], qmin: -127, qmax: 127))
    // Row 0, scale 0.5: 0.52 -> 1, -1.48 -> -1, 1.0 -> 1, 2.54 -> 3. Row 1, scale 0.25: -4, 0.5 -> 0 (even), 1.48 -> 1, 3.52 -> 4.
    let expected: [Float] = [0.5, -0.5, 0.5, 1.5, -1.0, 0, 0.25, 1.0]
    for (a, b) in zip(q, expected) { #expect(abs(a - b) < 1e-6) }
}

@Test func correlatedInputsLowerTheOutputErrorAndStayOnTheGrid() throws {
    // X has strongly correlated rows (a shared factor plus noise), as neighbouring pixels of a
    // conv patch do; the compensated rounding must beat round-to-nearest on ‖(W − Ŵ)X‖², every
    // weight must be q·scale with q in [-127, 127], and dead inputs (a zero row of X) must not break it.
    var rng = SplitMix64(seed: 7)
    let rows = 16, k = 24, n = 400
    var x = [Double](repeating: 0, count: k * n)
    for c in 0..<n {
        let f = gaussian(&rng)
        for i in 0..<k where i != 5 { x[i * n + c] = f + 0.3 * gaussian(&rng) }
    }
    var h = [Double](repeating: 0, count: k * k)
    for i in 0..<k { for j in 0..<k { for c in 0..<n { h[i * k + j] += x[i * n + c] * x[j * n + c] / Double(n) } } }
    let w = (0..<(rows * k)).map { _ in Float(gaussian(&rng) * 0.2) }
    let scales = (0..<rows).map { r in Double((0..<k).map { abs(w[r * k + $0]) }.max()!) / 127 * 16 }  // a coarse grid
    let q = try #require(ErrorCompensatedRounding.round(w, rows: rows, hessian: WeightHessian(k: k, rowAxis: 0, matrices: [h]),
                                                        groupOfRow: { _ in 0 }, scales: scales, qmin: -127, qmax: 127))
    let nearest = (0..<(rows * k)).map { i in Float((Double(w[i]) / scales[i / k]).rounded(.toNearestOrEven) * scales[i / k]) }
    let eq = outputError(w, q, x, rows: rows, k: k, n: n), en = outputError(w, nearest, x, rows: rows, k: k, n: n)
    #expect(eq < 0.5 * en, "compensated \(eq) vs nearest \(en)")
    for i in 0..<(rows * k) {
        let steps = Double(q[i]) / scales[i / k]
        #expect(abs(steps - steps.rounded()) < 1e-4 && abs(steps) <= 127.0001)
    }
}

@Test func groupsUseTheirOwnHessian() throws {
    // Two groups: group 0's Hessian is the identity (round to nearest), group 1's couples its two
    // inputs completely, so an error on the first weight is pushed onto the second.
    let hI: [Double] = [1, 0, 0, 1], hC: [Double] = [1, 0.999, 0.999, 1]
    let w: [Float] = [0.3, 0.3, 0.3, 0.3]
    let q = try #require(ErrorCompensatedRounding.round(w, rows: 2, hessian: WeightHessian(k: 2, rowAxis: 0, matrices: [hI, hC]),
                                                        groupOfRow: { $0 }, scales: [1, 1], qmin: -127, qmax: 127))
    #expect(q[0] == 0 && q[1] == 0)
    #expect(q[2] == 0 && q[3] == 1)   // 0.3 + 0.3 carried: the pair's sum 0.6 rounds to 1
}

@Test func groupScalesKeepEveryWeightOnItsGroupsGridAndStillCompensate() throws {
    // Per-group scales (--group-size): each run of `gs` columns of a row has its own scale; every
    // result must be q·(its group's scale) with q in [-7, 7], and the compensation must still beat
    // round-to-nearest with the same group scales.
    var rng = SplitMix64(seed: 11)
    let rows = 8, k = 20, n = 300, gs = 8, groups = 3   // 20 = 8 + 8 + 4
    var x = [Double](repeating: 0, count: k * n)
    for c in 0..<n {
        let f = gaussian(&rng)
        for i in 0..<k { x[i * n + c] = f + 0.4 * gaussian(&rng) }
    }
    var h = [Double](repeating: 0, count: k * k)
    for i in 0..<k { for j in 0..<k { for c in 0..<n { h[i * k + j] += x[i * n + c] * x[j * n + c] / Double(n) } } }
    let w = (0..<(rows * k)).map { i in Float(gaussian(&rng) * (i % k < gs ? 1.0 : 0.1)) }   // the first group is 10x larger
    var scales = [Double]()
    for r in 0..<rows {
        for g in 0..<groups {
            let m = (g * gs..<min(k, (g + 1) * gs)).map { abs(Double(w[r * k + $0])) }.max()!
            scales.append(m / 7)
        }
    }
    func scale(_ i: Int) -> Double { scales[(i / k) * groups + (i % k) / gs] }
    let q = try #require(ErrorCompensatedRounding.round(w, rows: rows, hessian: WeightHessian(k: k, rowAxis: 0, matrices: [h]),
                                                        groupOfRow: { _ in 0 }, scales: scales, qmin: -7, qmax: 7, groupSize: gs))
    let nearest = (0..<(rows * k)).map { i in Float((Double(w[i]) / scale(i)).rounded(.toNearestOrEven) * scale(i)) }
    for i in 0..<(rows * k) {
        let steps = Double(q[i]) / scale(i)
        #expect(abs(steps - steps.rounded()) < 1e-4 && abs(steps) <= 7.0001, "weight \(i): \(steps) steps of its group's scale")
    }
    let eq = outputError(w, q, x, rows: rows, k: k, n: n), en = outputError(w, nearest, x, rows: rows, k: k, n: n)
    #expect(eq < en, "compensated \(eq) vs nearest \(en)")
}
