import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func maxPoolIndicesFollowStorageOrder() throws {
    // 2×3 input, 2×2 window, stride 1: maxima at (1,1) and (1,2).
    let x = Tensor(shape: [1, 1, 2, 3], floats: [1, 2, 3, 4, 9, 8])
    let rowMajor = try runNode("MaxPool", [x], attributes: [.ints("kernel_shape", [2, 2])], outputs: 2, opset: 12)
    #expect(rowMajor[0].floats() == [9, 9])
    #expect(rowMajor[1].int64s() == [4, 4])
    let colMajor = try runNode("MaxPool", [x], attributes: [.ints("kernel_shape", [2, 2]), .int("storage_order", 1)], outputs: 2, opset: 12)
    // Column-major index of (h=1, w=1) in a 2×3 plane: w·H + h = 3.
    #expect(colMajor[1].int64s() == [3, 3])
}

@Test func averagePoolCountIncludePad() throws {
    let x = Tensor(shape: [1, 1, 2], floats: [2, 4])
    let attrs: [Attribute] = [.ints("kernel_shape", [2]), .ints("pads", [1, 1])]
    let excl = try runNode("AveragePool", [x], attributes: attrs)[0]
    let incl = try runNode("AveragePool", [x], attributes: attrs + [.int("count_include_pad", 1)])[0]
    #expect(excl.floats() == [2, 3, 4])
    #expect(incl.floats() == [1, 3, 2])
}

@Test func ceilModeDropsAWindowStartingInTheTrailingPad() throws {
    // Input 4, kernel 2, stride 2, pads (0,1), ceil: ceil((4+1-2)/2)+1 = 3 windows, but the
    // third would start at 4, past the input; it is dropped.
    let x = Tensor(shape: [1, 1, 4], floats: [1, 2, 3, 4])
    let y = try runNode("MaxPool", [x], attributes: [.ints("kernel_shape", [2]), .ints("strides", [2]), .ints("pads", [0, 1]), .int("ceil_mode", 1)])[0]
    #expect(y.floats() == [2, 4])
}
