import QuantCore
import QuantExecutor
import QuantIR
import Testing

/// x ─ Relu ─ a ─ Relu ─ b ─ Probe ─ y
func chainModel() -> Model {
    let g = Graph(name: "chain")
    g.inputs = [ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.param("N"), .value(3)]))]
    g.outputs = [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))]
    g.nodes = [
        Node(name: "r1", opType: "Relu", inputs: ["x"], outputs: ["a"]),
        Node(name: "r2", opType: "Relu", inputs: ["a"], outputs: ["b"]),
        Node(name: "probe", opType: "Probe", domain: "test", inputs: ["b"], outputs: ["y"]),
    ]
    return Model(graph: g, opsets: ["": 17, "test": 1])
}

/// Records the storages it is shown and lets `Probe` check which are still alive.
final class Recorder: ExecutionHook {
    var seen: [String: WeakStorage] = [:]
    var replaceWith: [String: Tensor] = [:]
    func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
        let name = executor.name(of: value)
        seen[name] = WeakStorage(tensor.storage)
        return replaceWith[name]
    }
}

final class WeakStorage {
    weak var storage: TensorStorage?
    init(_ s: TensorStorage) { storage = s }
}

@Test func hooksSeeEveryValueAndCanReplaceIt() throws {
    let recorder = Recorder()
    var aliveAtProbe: [String: Bool] = [:]
    var registry = KernelRegistry.standard
    registry.register("Probe", domain: "test") { _ in
        ClosureKernel { inputs, _ in
            for (k, v) in recorder.seen { aliveAtProbe[k] = v.storage != nil }
            return [inputs[0]]
        }
    }
    let exec = try Executor(model: chainModel(), options: ExecutorOptions(threads: 1, registry: registry))
    let x = Tensor(shape: [2, 3], floats: [-1, 2, -3, 4, -5, 6])
    // Replace `a` by a constant: the second Relu and the output see the replacement.
    recorder.replaceWith["a"] = Tensor(shape: [2, 3], floats: [-7, 7, -7, 7, -7, 7])
    let out = try exec.run(["x": x], hooks: [recorder])
    #expect(Set(recorder.seen.keys) == ["x", "a", "b", "y"])
    #expect(out["y"]?.floats() == [0, 7, 0, 7, 0, 7])
    // Intermediate `a` was freed after its last use (r2), before Probe ran; `b` is Probe's input.
    #expect(aliveAtProbe["a"] == false)
    #expect(aliveAtProbe["b"] == true)
    // Without the replacement the real values flow.
    recorder.replaceWith = [:]
    #expect(try exec.run(["x": x], hooks: [recorder])["y"]?.floats() == [0, 2, 0, 4, 0, 6])
}

@Test func feedsAreCheckedWithCodes() throws {
    var registry = KernelRegistry.standard
    registry.register("Probe", domain: "test") { _ in ClosureKernel { inputs, _ in [inputs[0]] } }
    let exec = try Executor(model: chainModel(), options: ExecutorOptions(threads: 1, registry: registry))
    func code(_ feeds: [String: Tensor]) -> String? {
        do {
            _ = try exec.run(feeds)
            return nil
        } catch let e as QuantKitError {
            return e.code + " " + e.message
        } catch { return "\(error)" }
    }
    #expect(code([:])?.hasPrefix("QK3002") == true)
    #expect(code(["x": Tensor(shape: [3], floats: [1, 2, 3]), "z": Tensor(shape: [1], floats: [1])])?.hasPrefix("QK3002") == true)
    #expect(code(["x": Tensor(shape: [1, 4], floats: [1, 2, 3, 4])]) == "QK3003 input 'x': dimension 1 must be 3 but is 4 (shape [1, 4])")
    #expect(code(["x": Tensor(shape: [1, 3], values: [Int64(1), 2, 3])])?.hasPrefix("QK3003") == true)
    #expect(code(["x": Tensor(shape: [5, 3], floats: [Float](repeating: 1, count: 15))]) == nil, "symbolic batch accepts any size")
}

@Test func unsupportedOperatorNamesNodeOpDomainAndOpset() {
    do {
        _ = try Executor(model: chainModel())
        Issue.record("expected QK3001")
    } catch let e as QuantKitError {
        #expect(e.code == "QK3001")
        #expect(e.message.contains("'probe'") && e.message.contains("'Probe'") && e.message.contains("'test'") && e.message.contains("opset 1"))
    } catch {
        Issue.record("\(error)")
    }
}

@Test func broadcastShapes() {
    #expect(Shapes.broadcast([[2, 1, 3], [4, 1]]) == [2, 4, 3])
    #expect(Shapes.broadcast([[], [5]]) == [5])
    #expect(Shapes.broadcast([[2, 3], [3, 2]]) == nil)
    #expect(Shapes.broadcastStrides([4, 1], to: [2, 4, 3]) == [0, 1, 0])
    #expect(Shapes.strides([2, 3, 4]) == [12, 4, 1])
}

/// cond, x ─ If ─ y      then: Relu(x) -> t      else: Neg(x) -> e
@Test func hooksSeeValuesInsideSubgraphs() throws {
    let thenG = Graph(name: "then", nodes: [Node(name: "relu", opType: "Relu", inputs: ["x"], outputs: ["t"])],
                      outputs: [ValueInfo(name: "t", type: TensorType(elementType: .float, shape: nil))])
    let elseG = Graph(name: "else", nodes: [Node(name: "neg", opType: "Neg", inputs: ["x"], outputs: ["e"])],
                      outputs: [ValueInfo(name: "e", type: TensorType(elementType: .float, shape: nil))])
    func graphAttr(_ name: String, _ g: Graph) -> Attribute {
        var a = Attribute.int(name, 0)
        a.proto.type = .graph
        a.proto.clearI()
        a.subgraphs = [g]
        return a
    }
    let g = Graph(name: "main", nodes: [Node(name: "if", opType: "If", inputs: ["cond"], outputs: ["y"],
                                             attributes: [graphAttr("then_branch", thenG), graphAttr("else_branch", elseG)])],
                  inputs: [ValueInfo(name: "cond", type: TensorType(elementType: .bool, shape: [])),
                           ValueInfo(name: "x", type: TensorType(elementType: .float, shape: [.value(3)]))],
                  outputs: [ValueInfo(name: "y", type: TensorType(elementType: .float, shape: nil))])
    let exec = try Executor(model: Model(graph: g, opsets: ["": 17]), options: ExecutorOptions(threads: 1))
    final class Names: ExecutionHook {
        var seen: [String] = []
        var replace: Tensor?
        func produced(_ value: ValueID, tensor: Tensor, executor: Executor) -> Tensor? {
            seen.append(executor.name(of: value))
            return executor.name(of: value) == "t" ? replace : nil
        }
    }
    let hook = Names()
    hook.replace = Tensor(shape: [3], floats: [9, 9, 9])
    let out = try exec.run(["cond": Tensor(shape: [], values: [true]), "x": Tensor(shape: [3], floats: [-1, 2, -3])], hooks: [hook])
    #expect(hook.seen == ["cond", "x", "t", "y"])
    #expect(out["y"]?.floats() == [9, 9, 9], "a replacement inside a branch reaches the If's output")
    hook.seen = []
    hook.replace = nil
    let out2 = try exec.run(["cond": Tensor(shape: [], values: [false]), "x": Tensor(shape: [3], floats: [-1, 2, -3])], hooks: [hook])
    #expect(hook.seen == ["cond", "x", "e", "y"])
    #expect(out2["y"]?.floats() == [1, -2, 3])
}

#if canImport(Glibc)
import CKernels

/// The heap tuning must really reach glibc (it was once compiled out by an `#if __GLIBC__`
/// placed before any C library header).
@Test func freedMemoryIsKeptOnGlibc() {
    #expect(qk_keep_freed_memory() == 1)
}
#endif

/// `qk_requantize`: the vector loop and the scalar tail agree, also for a NaN product (an inf
/// multiplier times a zero sum), which both clamp to the low end.
@Test func requantizeVectorAndTailAgree() {
    let acc: [Int32] = (0..<19).map { Int32($0 * 37 - 300) }
    var perElement = (0..<19).map { Float($0 % 5) * 0.25 + 0.1 }
    for (per, mult) in [(Int32(0), [Float(0.5)]), (1, perElement)] {
        var y = [UInt8](repeating: 0, count: 19)
        qk_requantize(acc, 19, mult, per, -128, 127, 128, Int32(QK_Q_UINT8.rawValue), &y)
        let expected = (0..<19).map { i -> UInt8 in
            let v = min(max(Float(acc[i]) * mult[per == 1 ? i : 0], -128), 127)
            return UInt8(Int32(v.rounded(.toNearestOrEven)) + 128)
        }
        #expect(y == expected)
    }
    // NaN products (0 · inf) at a vector lane and in the tail: both give the low end.
    let zeros = [Int32](repeating: 0, count: 9)
    perElement = [Float](repeating: .infinity, count: 9)
    var y = [Int8](repeating: 1, count: 9)
    qk_requantize(zeros, 9, perElement, 1, -128, 127, 0, Int32(QK_Q_INT8.rawValue), &y)
    #expect(y == [Int8](repeating: -128, count: 9))
}
