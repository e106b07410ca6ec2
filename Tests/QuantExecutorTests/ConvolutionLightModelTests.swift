import Foundation
import QuantCore
import QuantExecutor
import QuantIR
import QuantONNX
import Testing

/// The light_* CNNs (onnx wheel) through the convolution, pooling, normalization and matrix
/// kernels. The few glue operators they also use (Reshape, Concat, Add, ...) belong to other
/// families; minimal float-only stand-ins registered here let these tests run before the
/// families are merged (the standard registry's own kernels win once they exist).
enum LightModelGlue {
    static func registry() -> KernelRegistry {
        var r = KernelRegistry.standard
        func add(_ op: String, _ f: @escaping KernelFactory) { if !r.supports(domain: "", op: op) { r.register(op, f) } }
        add("Dropout") { _ in ClosureKernel { inputs, _ in [inputs[0]] } }
        add("ConstantOfShape") { ctx in
            let value = try ctx.tensor("value")?.floats().first ?? 0
            return ClosureKernel { inputs, _ in [Tensor(shape: inputs[0]!.intValues(), floats: [Float](repeating: value, count: Tensor.elementCount(inputs[0]!.intValues())))] }
        }
        add("Reshape") { _ in
            ClosureKernel { inputs, _ in
                let x = inputs[0]!
                var shape = inputs[1]!.intValues()
                for (i, d) in shape.enumerated() where d == 0 { shape[i] = x.shape[i] }
                if let k = shape.firstIndex(of: -1) { shape[k] = x.count / -shape.reduce(1, *) }
                return [x.reshaped(shape)]
            }
        }
        add("Unsqueeze") { ctx in
            let attr = ctx.ints("axes")
            return ClosureKernel { inputs, _ in
                let x = inputs[0]!
                let axes = (attr ?? inputs[1]!.intValues()).map { $0 < 0 ? $0 + x.rank + 1 : $0 }.sorted()
                var shape = x.shape
                for a in axes { shape.insert(1, at: a) }
                return [x.reshaped(shape)]
            }
        }
        add("Concat") { ctx in
            let axisAttr = ctx.int("axis", 0)
            return ClosureKernel { inputs, _ in
                let xs = inputs.compactMap { $0 }
                let axis = axisAttr < 0 ? axisAttr + xs[0].rank : axisAttr
                var shape = xs[0].shape
                shape[axis] = xs.map { $0.shape[axis] }.reduce(0, +)
                let outer = Tensor.elementCount(Array(shape[..<axis]))
                var out: [Float] = []
                out.reserveCapacity(Tensor.elementCount(shape))
                let parts = xs.map { $0.floats() }
                for o in 0..<outer {
                    for (t, p) in zip(xs, parts) {
                        let n = t.count / max(outer, 1)
                        out += p[(o * n)..<((o + 1) * n)]
                    }
                }
                return [Tensor(shape: shape, floats: out)]
            }
        }
        add("Transpose") { ctx in
            let permAttr = ctx.ints("perm")
            return ClosureKernel { inputs, _ in
                let x = inputs[0]!
                let perm = permAttr ?? Array((0..<x.rank).reversed())
                let shape = perm.map { x.shape[$0] }
                let src = Shapes.strides(x.shape), dstS = Shapes.strides(shape)
                let v = x.floats()
                var out = [Float](repeating: 0, count: x.count)
                for i in 0..<x.count {
                    var rem = i, off = 0
                    for d in 0..<shape.count { off += (rem / dstS[d]) * src[perm[d]]; rem %= dstS[d] }
                    out[i] = v[off]
                }
                return [Tensor(shape: shape, floats: out)]
            }
        }
        for (op, f) in [("Add", { (a: Float, b: Float) in a + b }), ("Mul", { $0 * $1 }), ("Sum", { $0 + $1 })] {
            add(op) { _ in
                ClosureKernel { inputs, _ in
                    var acc = inputs[0]!
                    for b in inputs.dropFirst().compactMap({ $0 }) {
                        let shape = Shapes.broadcast([acc.shape, b.shape])!
                        let sa = Shapes.broadcastStrides(acc.shape, to: shape), sb = Shapes.broadcastStrides(b.shape, to: shape)
                        let full = Shapes.strides(shape)
                        let va = acc.floats(), vb = b.floats()
                        var out = [Float](repeating: 0, count: Tensor.elementCount(shape))
                        for i in 0..<out.count {
                            var rem = i, oa = 0, ob = 0
                            for d in 0..<shape.count { let k = rem / full[d]; rem %= full[d]; oa += k * sa[d]; ob += k * sb[d] }
                            out[i] = f(va[oa], vb[ob])
                        }
                        acc = Tensor(shape: shape, floats: out)
                    }
                    return [acc]
                }
            }
        }
        return r
    }
}

let lightCache = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent(".cache/onnx-tests/light")

@Test(arguments: ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"])
func lightModelThroughFamilyKernels(_ name: String) throws {
    let dir = lightCache.appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("model.onnx").path) else { return }
    let model = try Model.load(path: dir.appendingPathComponent("model.onnx").path)
    let executor = try Executor(model: model, options: ExecutorOptions(threads: 2, registry: LightModelGlue.registry()))
    let set = dir.appendingPathComponent("test_data_set_0")
    var feeds: [String: Tensor] = [:]
    for (k, n) in executor.inputNames.enumerated() {
        feeds[n] = try TensorProtoCodec.decode(ModelFile.readTensor(path: set.appendingPathComponent("input_\(k).pb").path), store: nil)
    }
    let out = try executor.run(feeds)
    for (k, vi) in model.graph.outputs.enumerated() {
        let want = try TensorProtoCodec.decode(ModelFile.readTensor(path: set.appendingPathComponent("output_\(k).pb").path), store: nil).floats()
        let got = try #require(out[vi.name]).floats()
        try #require(got.count == want.count)
        let rtol: Float = name == "densenet121" ? 2e-3 : 1e-3
        let bad = zip(got, want).filter { abs($0 - $1) > 1e-7 + rtol * abs($1) }.count
        #expect(bad == 0, "\(name): \(bad)/\(want.count) outputs differ")
    }
}
