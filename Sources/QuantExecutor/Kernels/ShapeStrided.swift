import Foundation
import QuantCore

/// Strided views and copies shared by the data-movement kernels (Transpose, Slice, Expand,
/// Tile, DepthToSpace, ...). Element-type agnostic: elements are moved as 1, 2, 4 or 8 bytes.
enum Strided {
    /// Calls `body(index, offsets)` for every multi-index of `shape` in row-major order, in
    /// parallel chunks; `offsets[k]` is `Σ index[d]·strides[k][d]`. `grain` is in indices.
    static func forEach(_ shape: [Int], _ strides: [[Int]], threads: Int, grain: Int, _ body: (Int, UnsafePointer<Int>) -> Void) {
        let total = Tensor.elementCount(shape)
        guard total > 0 else { return }
        let rank = shape.count, k = strides.count
        parallelFor(total, threads: threads, grain: max(1, grain)) { range in
            let idx = UnsafeMutablePointer<Int>.allocate(capacity: max(rank, 1))
            let off = UnsafeMutablePointer<Int>.allocate(capacity: max(k, 1))
            defer { idx.deallocate(); off.deallocate() }
            var r = range.lowerBound
            for d in stride(from: rank - 1, through: 0, by: -1) {
                idx[d] = r % shape[d]
                r /= shape[d]
            }
            for j in 0..<k {
                var o = 0
                for d in 0..<rank { o += idx[d] * strides[j][d] }
                off[j] = o
            }
            for i in range {
                body(i, off)
                var d = rank - 1
                while d >= 0 {
                    idx[d] += 1
                    for j in 0..<k { off[j] += strides[j][d] }
                    if idx[d] < shape[d] { break }
                    for j in 0..<k { off[j] -= strides[j][d] * shape[d] }
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }

    /// Drops size-1 dimensions and merges adjacent dimensions that are contiguous in every
    /// stride set. Returns at least one dimension.
    static func coalesce(_ shape: [Int], _ strides: [[Int]]) -> ([Int], [[Int]]) {
        var dims: [Int] = []
        var out: [[Int]] = Array(repeating: [], count: strides.count)
        for d in 0..<shape.count where shape[d] != 1 {
            if !dims.isEmpty, (0..<strides.count).allSatisfy({ out[$0].last! == strides[$0][d] * shape[d] }) {
                dims[dims.count - 1] *= shape[d]
                for k in 0..<strides.count { out[k][out[k].count - 1] = strides[k][d] }
            } else {
                dims.append(shape[d])
                for k in 0..<strides.count { out[k].append(strides[k][d]) }
            }
        }
        if dims.isEmpty { return ([1], strides.map { _ in [0] }) }
        return (dims, out)
    }

    /// A new tensor of `shape` whose element at index i is `x`'s element at
    /// `base + Σ i[d]·strides[d]` (strides in elements, may be 0 or negative).
    static func gather(_ x: Tensor, shape: [Int], strides: [Int], base: Int = 0, threads: Int) -> Tensor {
        let out = Tensor(dtype: x.dtype, shape: shape, storage: TensorStorage(uninitialized: x.dtype.byteCount(elements: Tensor.elementCount(shape))))
        if out.count == 0 { return out }
        switch x.dtype.bitWidth {
        case 8: copy(x, out, UInt8.self, strides, base, threads)
        case 16: copy(x, out, UInt16.self, strides, base, threads)
        case 32: copy(x, out, UInt32.self, strides, base, threads)
        default: copy(x, out, UInt64.self, strides, base, threads)
        }
        return out
    }

    static func copy<T>(_ x: Tensor, _ out: Tensor, _: T.Type, _ strides: [Int], _ base: Int, _ threads: Int) {
        let outStrides = Shapes.strides(out.shape)
        let (dims, st) = coalesce(out.shape, [strides, outStrides])
        let src = x.storage.pointer.assumingMemoryBound(to: T.self) + base
        let dst = out.storage.pointer.assumingMemoryBound(to: T.self)
        let inner = dims.last!, s = st[0].last!
        let outer = Array(dims.dropLast())
        let outerStrides = [Array(st[0].dropLast()), Array(st[1].dropLast())]
        // A transpose that moves the source's contiguous axis: copy 2-D tiles so that both the
        // reads and the writes stay within a few cache lines.
        if s != 1, let j = st[0].indices.dropLast().first(where: { st[0][$0] == 1 }), dims[j] >= 8, inner >= 8 {
            tiled(src, dst, dims, st, j, threads)
            return
        }
        Strided.forEach(outer, outerStrides, threads: threads, grain: max(1, 16384 / inner)) { _, off in
            let a = src + off[0], b = dst + off[1]
            if s == 1 {
                b.update(from: a, count: inner)
            } else if s == 0 {
                b.update(repeating: a[0], count: inner)
            } else {
                for i in 0..<inner { b[i] = a[i * s] }
            }
        }
    }

    /// Transposes tiles of (dims[j] × inner) where the source is contiguous along j and the
    /// destination along the last dimension.
    static func tiled<T>(_ src: UnsafePointer<T>, _ dst: UnsafeMutablePointer<T>, _ dims: [Int], _ st: [[Int]], _ j: Int, _ threads: Int) {
        let last = dims.count - 1
        let nj = dims[j], nl = dims[last]
        let sl = st[0][last], dj = st[1][j]
        var outerDims: [Int] = [], outerSt: [[Int]] = [[], []]
        for d in 0..<last where d != j {
            outerDims.append(dims[d])
            outerSt[0].append(st[0][d])
            outerSt[1].append(st[1][d])
        }
        let tile = 32
        let tilesJ = (nj + tile - 1) / tile, tilesL = (nl + tile - 1) / tile
        // Parallelize over (outer index, tile row) pairs.
        outerDims.append(tilesJ)
        outerSt[0].append(tile)
        outerSt[1].append(tile * dj)
        Strided.forEach(outerDims, outerSt, threads: threads, grain: max(1, 16384 / (tile * nl))) { i, off in
            let tj = i % tilesJ
            let j0 = tj * tile, j1 = min(nj, j0 + tile)
            let a = src + off[0], b = dst + off[1]
            for tl in 0..<tilesL {
                let l0 = tl * tile, l1 = min(nl, l0 + tile)
                for jj in 0..<(j1 - j0) {
                    let row = b + jj * dj
                    let col = a + jj
                    for l in l0..<l1 { row[l] = col[l * sl] }
                }
            }
        }
    }

    /// `x` with its axes permuted: output axis d is input axis `perm[d]`.
    static func transpose(_ x: Tensor, perm: [Int], threads: Int) -> Tensor {
        let s = Shapes.strides(x.shape)
        return gather(x, shape: perm.map { x.shape[$0] }, strides: perm.map { s[$0] }, threads: threads)
    }
}
