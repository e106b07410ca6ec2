import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func upsampleNearestRepeats() throws {
    let x = Tensor(shape: [1, 2], floats: [1, 2])
    let y = try runNode("Upsample", [x, Tensor(shape: [2], floats: [1, 2])], attributes: [.string("mode", "nearest")], opset: 9)[0]
    #expect(y.floats() == [1, 1, 2, 2])
}

@Test func resizeLinearHalfPixelAndAlignCorners() throws {
    let x = Tensor(shape: [1, 2], floats: [0, 4])
    let scales = Tensor(shape: [2], floats: [1, 2])
    // half_pixel: source coordinates -0.25, 0.25, 0.75, 1.25, clamped at the edges.
    let hp = try runNode("Resize", [x, nil, scales], attributes: [.string("mode", "linear")], opset: 13)[0]
    #expect(hp.floats() == [0, 1, 3, 4])
    // align_corners: 0, 1/3, 2/3, 1.
    let ac = try runNode("Resize", [x, nil, scales], attributes: [.string("mode", "linear"), .string("coordinate_transformation_mode", "align_corners")], opset: 13)[0]
    let want: [Float] = [0, 4.0 / 3, 8.0 / 3, 4]
    #expect(zip(ac.floats(), want).allSatisfy { abs($0 - $1) < 1e-5 })
}

@Test func resizeNearestModes() throws {
    let x = Tensor(shape: [4], floats: [10, 20, 30, 40])
    let sizes = Tensor(shape: [1], values: [Int64(2)])
    // asymmetric, scale 0.5: source coordinates 0 and 2 (integers: every mode agrees).
    let y = try runNode("Resize", [x, nil, nil, sizes], attributes: [.string("coordinate_transformation_mode", "asymmetric")], opset: 13)[0]
    #expect(y.floats() == [10, 30])
    // half_pixel: source coordinates 0.5 and 2.5; round_prefer_floor picks 0 and 2, ceil 1 and 3.
    let floorY = try runNode("Resize", [x, nil, nil, sizes], opset: 13)[0]
    let ceilY = try runNode("Resize", [x, nil, nil, sizes], attributes: [.string("nearest_mode", "round_prefer_ceil")], opset: 13)[0]
    #expect(floorY.floats() == [10, 30])
    #expect(ceilY.floats() == [20, 40])
}
