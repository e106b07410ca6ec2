import QuantCore
import QuantExecutor
import QuantIR
import Testing

@Test func softmaxFlattensBeforeOpset13() throws {
    let x = Tensor(shape: [2, 2], floats: [0, 0, 0, 0])
    // Opset 11, axis 0: one softmax over all four elements. Opset 13, axis 0: per column.
    let old = try runNode("Softmax", [x], attributes: [.int("axis", 0)], opset: 11)[0]
    let new = try runNode("Softmax", [x], attributes: [.int("axis", 0)], opset: 13)[0]
    #expect(old.floats() == [0.25, 0.25, 0.25, 0.25])
    #expect(new.floats() == [0.5, 0.5, 0.5, 0.5])
}

@Test func hardmaxPicksTheFirstMaximum() throws {
    let x = Tensor(shape: [1, 4], floats: [1, 3, 3, 2])
    #expect(try runNode("Hardmax", [x])[0].floats() == [0, 1, 0, 0])
}

@Test func layerNormalizationReturnsMeanAndInverseStdDev() throws {
    let x = Tensor(shape: [2, 2], floats: [1, 3, 2, 4])
    let scale = Tensor(shape: [2], floats: [1, 1])
    let out = try runNode("LayerNormalization", [x, scale], attributes: [.float("epsilon", 0)], outputs: 3, opset: 17)
    #expect(out[0].floats() == [-1, 1, -1, 1])
    #expect(out[1].shape == [2, 1])
    #expect(out[1].floats() == [2, 3])
    #expect(out[2].floats() == [1, 1])
}

@Test func groupNormalizationScalesPerGroupAtOpset18AndPerChannelAt21() throws {
    // Two channels in one group, values {0, 2} per channel: mean 1, std 1.
    let x = Tensor(shape: [1, 2, 2], floats: [0, 2, 0, 2])
    let g18 = try runNode("GroupNormalization", [x, Tensor(shape: [1], floats: [2]), Tensor(shape: [1], floats: [1])],
                          attributes: [.int("num_groups", 1), .float("epsilon", 0)], opset: 18)[0]
    #expect(g18.floats() == [-1, 3, -1, 3])
    let g21 = try runNode("GroupNormalization", [x, Tensor(shape: [2], floats: [1, 2]), Tensor(shape: [2], floats: [0, 1])],
                          attributes: [.int("num_groups", 1), .float("epsilon", 0)], opset: 21)[0]
    #expect(g21.floats() == [-1, 1, -1, 3])
}

@Test func batchNormalizationTrainingModeIsRejected() throws {
    let x = Tensor(shape: [1, 1, 1], floats: [1])
    let p = Tensor(shape: [1], floats: [1])
    #expect(throws: (any Error).self) {
        try runNode("BatchNormalization", [x, p, p, p, p], attributes: [.int("training_mode", 1)], opset: 15)
    }
}
