import QuantCore
import Testing

/// Large tensors come from the block allocator: page-aligned, never overlapping, zeroed when
/// asked even when the block is a reused dirty one. (Which block comes back is not asserted:
/// tests running concurrently allocate too.)
@Test func largeStorageIsReusedAndZeroedOnRequest() {
    let bytes = 3 << 20
    do {
        let a = TensorStorage(uninitialized: bytes)
        #expect(Int(bitPattern: a.pointer) % 4096 == 0)
        a.pointer.initializeMemory(as: UInt8.self, repeating: 0xAB, count: bytes)
    }
    // The freed dirty block is the best fit for the same size; `zeroed` must clear it.
    let b = TensorStorage(zeroed: bytes)
    let bytesView = UnsafeRawBufferPointer(start: b.pointer, count: bytes)
    #expect(bytesView.allSatisfy { $0 == 0 })
    // Blocks in use never overlap.
    let c = TensorStorage(uninitialized: bytes)
    #expect(c.pointer + bytes <= b.pointer || b.pointer + bytes <= c.pointer)
    TensorStorage.releaseFreedMemory()
    let d = TensorStorage(zeroed: 1 << 20)
    #expect(UnsafeRawBufferPointer(start: d.pointer, count: 1 << 20).allSatisfy { $0 == 0 })
}

@Test func smallStorageStays64ByteAligned() {
    let s = TensorStorage(uninitialized: 1000)
    #expect(Int(bitPattern: s.pointer) % 64 == 0)
}
