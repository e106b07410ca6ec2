// swift-tools-version:6.0
import PackageDescription

// Modules follow the data flow (see docs/ARCHITECTURE.md): each stage depends only on the
// stages before it. Only the `quantkit` executable imports ArgumentParser.
//
// Language mode 5: the numeric kernels hand raw buffers to worker threads, which Swift 6's
// strict Sendable checking rejects without adding safety here; module boundaries keep shared
// mutable state out of public APIs instead.
let settings: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "QuantKit",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "QuantKit", targets: ["QuantKit"]),
        .executable(name: "quantkit", targets: ["quantkit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        // Documentation only: `swift package generate-documentation --target QuantKit` (README).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", exact: "1.5.0"),
    ],
    targets: [
        .target(name: "QuantCore", dependencies: ["CKernels"], swiftSettings: settings),
        .target(
            name: "QuantONNX",
            dependencies: ["QuantCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: settings),
        .target(name: "QuantIR", dependencies: ["QuantCore", "QuantONNX"], swiftSettings: settings),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .target(
            name: "QuantData", dependencies: ["QuantCore", "QuantONNX", "QuantIR", "CTurboJPEG", "CPNG"],
            exclude: ["README.md"], swiftSettings: settings),
        .systemLibrary(name: "CBLAS", providers: [.apt(["libopenblas-dev"])]),
        // Float32 micro-kernels with AVX2+FMA variants picked at run time, and the worker pool.
        .target(name: "CKernels", exclude: ["README.md"]),
        .target(
            name: "QuantExecutor",
            dependencies: ["QuantCore", "QuantIR", "CKernels", .target(name: "CBLAS", condition: .when(platforms: [.linux]))],
            swiftSettings: settings),
        .target(name: "QuantCalibration", dependencies: ["QuantCore", "QuantExecutor", "CKernels"], swiftSettings: settings),
        .target(name: "QuantAlgorithms", dependencies: ["QuantCore", "QuantIR", "QuantCalibration", "QuantExecutor"], swiftSettings: settings),
        .target(name: "QuantRewrite", dependencies: ["QuantCore", "QuantIR", "QuantCalibration", "QuantAlgorithms", "QuantExecutor"], swiftSettings: settings),
        .target(
            name: "QuantAnalysis", dependencies: ["CKernels", "QuantCore", "QuantIR", "QuantExecutor", "QuantCalibration"], exclude: ["README.md"],
            swiftSettings: settings),
        .target(
            name: "QuantKit",
            dependencies: ["QuantCore", "QuantONNX", "QuantIR", "QuantExecutor", "QuantCalibration", "QuantAlgorithms", "QuantRewrite", "QuantData",
                           "QuantAnalysis"],
            swiftSettings: settings),
        .target(name: "QuantTuning", dependencies: ["QuantKit"], exclude: ["README.md"], swiftSettings: settings),
        .executableTarget(
            name: "quantkit",
            dependencies: ["QuantKit", "QuantTuning", "QuantData", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: settings),
        // libFuzzer harness of the readers of outside input: scripts/fuzz.sh builds it with
        // `--sanitize fuzzer`; built plainly it does nothing.
        .executableTarget(name: "quantkit-fuzz", dependencies: ["QuantKit"], swiftSettings: settings),
        .testTarget(name: "QuantCoreTests", dependencies: ["QuantCore"], swiftSettings: settings),
        .testTarget(name: "QuantIRTests", dependencies: ["QuantIR", "QuantONNX"], swiftSettings: settings),
        .testTarget(name: "QuantCalibrationTests", dependencies: ["QuantCalibration"], swiftSettings: settings),
        .testTarget(name: "QuantExecutorTests", dependencies: ["QuantExecutor", "QuantIR", "CKernels"], swiftSettings: settings),
        .testTarget(
            name: "ConformanceTests", dependencies: ["QuantExecutor", "QuantIR"], exclude: ["skiplist.txt"],
            swiftSettings: settings),
        .testTarget(name: "CLITests", dependencies: ["QuantKit"], swiftSettings: settings),
        .testTarget(name: "QuantAnalysisTests", dependencies: ["QuantAnalysis", "QuantIR", "QuantCore"], swiftSettings: settings),
        .testTarget(name: "QuantRewriteTests", dependencies: ["QuantRewrite", "QuantAlgorithms", "QuantCalibration", "QuantIR", "QuantCore"], swiftSettings: settings),
        .testTarget(name: "QuantTuningTests", dependencies: ["QuantTuning", "QuantKit"], swiftSettings: settings),
        .testTarget(name: "QuantKitTests", dependencies: ["QuantKit", "QuantCore", "QuantIR", "QuantExecutor"], swiftSettings: settings),
        .testTarget(name: "QuantDataTests", dependencies: ["QuantData", "QuantIR", "QuantCore"], swiftSettings: settings),
    ]
)
