// swift-tools-version:6.1
import PackageDescription

// Every target: Swift 6 language mode (the package default) plus the upcoming features the house style asks for.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "tokenwatch",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "gateway", targets: ["Gateway"]),
        .executable(name: "ingestor", targets: ["Ingestor"]),
        .executable(name: "aggregator", targets: ["Aggregator"]),
        .executable(name: "detector", targets: ["Detector"]),
        .executable(name: "query", targets: ["Query"]),
        .executable(name: "tokenwatch-bench", targets: ["Benchmarks"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // MARK: - C libraries (Debian packages)
        .systemLibrary(
            name: "CRdKafka", path: "Shared/CRdKafka", pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(
            name: "CHiredis", path: "Shared/CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(
            name: "CLibPQ", path: "Shared/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]),

        .systemLibrary(name: "CZlib", path: "Shared/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Shared/COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),

        // MARK: - Shared modules
        .target(
            name: "ClientSupport", path: "Shared/ClientSupport",
            swiftSettings: swiftSettings),
        .target(
            name: "Kafka",
            dependencies: [
                "CRdKafka", "ClientSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Kafka", swiftSettings: swiftSettings),
        .target(
            name: "Redis",
            dependencies: ["CHiredis", "COpenSSL", "ClientSupport", .product(name: "Logging", package: "swift-log")],
            path: "Shared/Redis", swiftSettings: swiftSettings),
        .target(
            name: "Postgres",
            dependencies: ["CLibPQ", "ClientSupport", .product(name: "Logging", package: "swift-log")],
            path: "Shared/Postgres", swiftSettings: swiftSettings),
        .target(name: "Events", path: "Shared/Events", swiftSettings: swiftSettings),
        .target(name: "OTLP", dependencies: ["Events"], path: "Shared/OTLP", swiftSettings: swiftSettings),
        .target(name: "Codecs", dependencies: ["CZlib", "COpenSSL"], path: "Shared/Codecs", swiftSettings: swiftSettings),
        .target(
            name: "Notify",
            dependencies: [
                "Codecs",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Shared/Notify", swiftSettings: swiftSettings),
        .target(name: "Rollups", dependencies: ["Events", "Postgres", "Redis"], path: "Shared/Rollups", swiftSettings: swiftSettings),
        .target(
            name: "ServiceKit",
            dependencies: [
                "Kafka", "Redis", "Postgres", "Events", "Rollups", "ClientSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Shared/ServiceKit", swiftSettings: swiftSettings),

        // MARK: - Services
        .target(
            name: "GatewayCore", dependencies: ["ServiceKit", "Events", "OTLP", "Rollups", "Codecs", "Kafka", "Redis", "Postgres", "Notify",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Gateway/Core",
            // The dashboard's files are compiled into the binary (PackageResources), so an image needs nothing beside it.
            resources: [.embedInCode("Dashboard/index.html"), .embedInCode("Dashboard/app.js"), .embedInCode("Dashboard/app.css")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "Gateway", dependencies: ["GatewayCore", "ServiceKit", "Kafka", "Redis", "Postgres", "Events", "Rollups", "Notify", .product(name: "Hummingbird", package: "hummingbird")],
            path: "Services/Gateway/Main", swiftSettings: swiftSettings),
        .target(
            name: "IngestorCore", dependencies: ["ServiceKit", "Events", "Kafka", "Redis", "Postgres", "Rollups",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Ingestor/Core", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Ingestor", dependencies: ["IngestorCore", "ServiceKit", "Events", "Kafka", "Redis", "Postgres", .product(name: "Logging", package: "swift-log")],
            path: "Services/Ingestor/Main", swiftSettings: swiftSettings),
        .target(
            name: "AggregatorCore", dependencies: ["ServiceKit", "Events", "Rollups", "Kafka", "Postgres",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Aggregator/Core", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Aggregator", dependencies: ["AggregatorCore", "ServiceKit", "Events", "Kafka", "Postgres", .product(name: "Logging", package: "swift-log")],
            path: "Services/Aggregator/Main", swiftSettings: swiftSettings),
        .target(
            name: "DetectorCore", dependencies: ["ServiceKit", "Events", "Rollups", "Codecs", "Kafka", "Postgres",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Detector/Core", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Detector", dependencies: ["DetectorCore", "ServiceKit", "Events", "Rollups", "Kafka", "Postgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Services/Detector/Main", swiftSettings: swiftSettings),
        .target(
            name: "QueryCore", dependencies: ["ServiceKit", "Events", "Rollups", "Kafka", "Redis", "Postgres", "Notify", "ClientSupport",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/Query/Core", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Query", dependencies: ["QueryCore", "ServiceKit", "Events", "Rollups", "Kafka", "Redis", "Postgres", "Notify", .product(name: "Logging", package: "swift-log")],
            path: "Services/Query/Main", swiftSettings: swiftSettings),

        // MARK: - Benchmarks (`make bench`; printed, never asserted)
        .executableTarget(
            name: "Benchmarks", dependencies: ["Events", "OTLP", "Kafka", "DetectorCore", "Rollups"], path: "Tests/Benchmarks",
            swiftSettings: swiftSettings),

        // MARK: - Tests
        .target(
            name: "TestSupport", dependencies: ["Kafka", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "RollupsTests", dependencies: ["Rollups", "Events", "Postgres", "TestSupport"], path: "Tests/RollupsTests", swiftSettings: swiftSettings),
        .testTarget(name: "EventsTests", dependencies: ["Events"], path: "Tests/EventsTests", swiftSettings: swiftSettings),
        .testTarget(name: "OTLPTests", dependencies: ["OTLP", "Events"], path: "Tests/OTLPTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "ServiceKitTests",
            dependencies: [
                "ServiceKit", "Events", "Kafka", "Redis",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Tests/ServiceKitTests", swiftSettings: swiftSettings),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "TestSupport"], path: "Tests/KafkaTests", swiftSettings: swiftSettings),
        .testTarget(name: "RedisTests", dependencies: ["Redis", "TestSupport"], path: "Tests/RedisTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "IngestorTests", dependencies: ["IngestorCore", "TestSupport", "Events", "Kafka", "Redis", "Postgres", "ServiceKit"],
            path: "Tests/IngestorTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "AggregatorTests", dependencies: ["AggregatorCore", "Rollups", "TestSupport", "Events", "Kafka", "Postgres", "ServiceKit"],
            path: "Tests/AggregatorTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "QueryTests", dependencies: ["QueryCore", "Notify", "Rollups", "TestSupport", "Events", "Kafka", "Redis", "Postgres", "ServiceKit"],
            path: "Tests/QueryTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "GatewayTests", dependencies: ["GatewayCore", "OTLP", "Notify", "Codecs", "Rollups", "TestSupport", "Events", "Kafka", "Redis", "Postgres", "ServiceKit",
                .product(name: "HummingbirdTesting", package: "hummingbird"), .product(name: "Hummingbird", package: "hummingbird")],
            path: "Tests/GatewayTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "ServicesTests", dependencies: ["TestSupport", "Kafka", "Postgres", "Events", "OTLP", "Rollups", "ServiceKit", .product(name: "Logging", package: "swift-log")], path: "Tests/ServicesTests", swiftSettings: swiftSettings),
        .testTarget(name: "NotifyTests", dependencies: ["Notify", .product(name: "NIOCore", package: "swift-nio")], path: "Tests/NotifyTests", swiftSettings: swiftSettings),
        .testTarget(name: "DetectorTests", dependencies: ["DetectorCore", "Rollups"], path: "Tests/DetectorTests", swiftSettings: swiftSettings),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"], path: "Tests/PostgresTests", swiftSettings: swiftSettings),
    ]
)
