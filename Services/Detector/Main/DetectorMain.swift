import ArgumentParser
import DetectorCore
import Events
import Foundation
import Kafka
import Logging
import Postgres
import Rollups
import ServiceKit
import ServiceLifecycle

/// The detector: scores every closed window of every series on llm.rollups.v1 and publishes anomalies on
/// llm.anomalies.v1. `detector backtest` and `detector eval` run the same detectors offline.
@main
struct DetectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detector",
        abstract: "Tokenwatch anomaly detector.",
        subcommands: [Serve.self, BacktestCommand.self, EvalCommand.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the service (configured by TW_* environment variables).")

    func run() async throws {
        await ServiceRunner.main(service: "detector", defaultPort: 8083) { runtime in
            let settings = try DetectorSettings(environment: Environment())
            var parameters = DetectorParameters.default
            parameters.warmupWindows = settings.warmupWindows
            let postgres = try await connectPostgres(runtime)
            let producer = try runtime.makeProducer()
            let engine = DetectorEngine(parameters: parameters, history: PostgresDetectorHistory(postgres: postgres), replayHours: settings.replayHours, logger: runtime.logger)
            engine.updateSettings(try await DetectorSettingsStore.load(from: postgres))
            let consumer = try runtime.makeConsumer(group: runtime.configuration.consumerGroup, rebalanceHandler: DetectorRebalanceHandler(engine: engine))
            let pipeline = DetectorPipeline(engine: engine, producer: producer, topics: runtime.configuration.topics, logger: runtime.logger)
            let logger = runtime.logger
            let loop = ConsumerService(consumer: consumer, topics: [runtime.configuration.topics.rollups], logger: logger, batchSize: settings.batchSize) { batch in
                _ = try await pipeline.process(batch)
                do {
                    try await consumer.commit(batch.nextOffsets)
                } catch {
                    // Published anomalies are upserts by id: a replay after a failed commit repeats them harmlessly.
                    logger.warning("Offset commit failed; the batch will be replayed", metadata: ["error": "\(error)"])
                }
            }
            var services: [any Service] = [producer, detectorSettingsRefresher(postgres: postgres, engine: engine, interval: settings.settingsRefresh, logger: logger), loop]
            if settings.silenceAfter > .zero {
                services.append(silenceWatch(pipeline: pipeline, engine: engine, after: settings.silenceAfter, logger: logger))
            }
            return ServiceParts(
                services: services,
                readinessChecks: .dependencies(kafka: { await producer.brokersReachable() }, postgres: postgres))
        }
    }
}

struct BacktestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backtest",
        abstract: "Print the anomalies the detectors would have raised over a history (JSON lines, then a summary line).",
        discussion: """
            Either a CSV file (timestamp,value[,requests]; RFC 3339, YYYY-MM-DD HH:MM:SS (UTC) or Unix-seconds
            timestamps; any regular interval) for one metric, or a tenant's stored 1-minute rollups (TW_POSTGRES_URL).
            Same detectors and parameters as the service; for a tenant, its stored sensitivity and muted series unless
            --sensitivity is given. --metric generic runs the detector for series of unknown kind (both directions,
            scale learned from the data); the LLM metrics keep their harmful-direction semantics.
            """)

    @Option(help: "CSV file of one series.") var csv: String?
    @Option(help: "Metric of the CSV: generic, \(DetectorMetric.allCases.map(\.name).joined(separator: ", ")).") var metric = "request_rate"
    @Option(help: "Tenant whose stored rollups to replay.") var tenant: String?
    @Option(help: "Only this provider (with --tenant).") var provider: String?
    @Option(help: "Only this model (with --tenant).") var model: String?
    @Option(help: "Start (RFC 3339; with --tenant; default: 7 days before --to).") var from: String?
    @Option(help: "End (RFC 3339; with --tenant; default: now).") var to: String?
    @Option(help: "Sensitivity, 0.25...4 (default: the tenant's, or 1).") var sensitivity: Double?
    @Option(help: "Windows before a series may alert.") var warmup: Int?

    func validate() throws {
        guard (self.csv == nil) != (self.tenant == nil) else { throw ValidationError("give either --csv or --tenant") }
        if let s = self.sensitivity, !(0.25...4).contains(s) { throw ValidationError("--sensitivity must be within 0.25...4") }
        guard self.metric == "generic" || DetectorMetric(name: self.metric) != nil else {
            throw ValidationError("--metric must be one of generic, \(DetectorMetric.allCases.map(\.name).joined(separator: ", "))")
        }
        if self.metric == "generic" && self.csv == nil { throw ValidationError("--metric generic needs --csv") }
    }

    func run() async throws {
        var parameters = DetectorParameters.default
        if let warmup { parameters.warmupWindows = warmup }
        var runs: [(SeriesKey, [WindowObservation], Int64, MetricMask)] = []
        if let csv {
            let text = try String(contentsOfFile: csv, encoding: .utf8)
            let (interval, rows, warnings) = try Backtest.parseCSV(text)
            for warning in warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
            if self.metric == "generic" {
                parameters.sensitivity = self.sensitivity ?? 1
                let found = Backtest.generic(rows, interval: interval, parameters: parameters)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                for anomaly in found { print(String(decoding: try encoder.encode(anomaly), as: UTF8.self)) }
                let days = Double(rows.count) * Double(interval) / 86_400_000_000
                print("{\"summary\":{\"windows\":\(rows.count),\"interval_seconds\":\(interval / 1_000_000),\"days\":\(String(format: "%.2f", days)),\"anomalies\":\(found.count),\"by_direction\":{\"down\":\(found.filter { $0.direction == "down" }.count),\"up\":\(found.filter { $0.direction == "up" }.count)}}}")
                return
            }
            let metric = DetectorMetric(name: self.metric)!
            let observations = try Backtest.observations(rows, metric: metric, interval: interval)
            let muted = Backtest.only(metric)
            parameters.sensitivity = self.sensitivity ?? 1
            runs.append((SeriesKey(tenant: "csv", provider: "", model: URL(fileURLWithPath: csv).lastPathComponent), observations, interval, muted))
        } else if let tenant {
            let url = ProcessInfo.processInfo.environment["TW_POSTGRES_URL"] ?? "postgresql://tokenwatch@127.0.0.1:5432/tokenwatch"
            var logger = Logger(label: "backtest")
            logger.logLevel = .warning
            let postgres = PostgresClient(configuration: PostgresConfiguration(url: url), logger: logger)
            defer { Task { await postgres.close() } }
            let end = try self.to.map { try Self.time($0, "--to") } ?? EventTimestamp.now().microsecondsSinceEpoch
            let start = try self.from.map { try Self.time($0, "--from") } ?? end - 7 * 86_400_000_000
            guard start < end, end - start <= 92 * 86_400_000_000 else { throw ValidationError("--from must be before --to, at most 92 days") }
            let settings = try await DetectorSettingsStore.load(from: postgres)[tenant]
            parameters.sensitivity = self.sensitivity ?? settings?.sensitivity ?? 1
            var query = PostgresQuery(
                sql: "SELECT \(RollupStore.selectColumns) FROM rollups_1m WHERE tenant_id = $1 AND window_start >= $2::timestamptz AND window_start < $3::timestamptz",
                parameters: [tenant, EventTimestamp(microsecondsSinceEpoch: start).rfc3339, EventTimestamp(microsecondsSinceEpoch: end).rfc3339])
            if let provider { query.parameters.append(provider); query.sql += " AND provider = $\(query.parameters.count)" }
            if let model { query.parameters.append(model); query.sql += " AND model = $\(query.parameters.count)" }
            // The levels the detector watches (not the full cross product).
            query.sql += " AND NOT (app <> '' AND environment <> '') AND app <> 'default' AND environment <> 'default'"
            query.sql += " ORDER BY window_start"
            var bySeries: [SeriesKey: [WindowObservation]] = [:]
            for row in try await postgres.query(query) {
                let record = try RollupStore.record(row, granularity: .minute)
                bySeries[record.key.series, default: []].append(WindowObservation(record))
            }
            for (series, observations) in bySeries.sorted(by: { $0.key < $1.key }) {
                runs.append((series, observations, 60_000_000, settings?.mask(for: series) ?? .none))
            }
        }
        var all: [Anomaly] = []
        var windows = 0
        var interval: Int64 = 60_000_000
        for (series, observations, step, muted) in runs {
            let result = Backtest.run(series: series, observations: observations, parameters: parameters, muted: muted)
            for anomaly in result.anomalies { print(String(decoding: anomaly.jsonBytes(), as: UTF8.self)) }
            all += result.anomalies
            windows += observations.count
            interval = step
        }
        print(Backtest.summary(windows: windows, interval: interval, anomalies: all))
    }

    static func time(_ text: String, _ name: String) throws -> Int64 {
        guard let t = EventTimestamp(rfc3339: text) else { throw ValidationError("\(name) must be an RFC 3339 date-time") }
        return t.microsecondsSinceEpoch
    }
}

struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Generate the labelled corpus and report precision, recall, F1 and delay against two baselines.")

    @Option(help: "Corpus seed.") var seed: UInt64 = 42
    @Option(help: "Series in the corpus.") var series = 300
    @Option(help: "Days per series.") var days = 7
    @Flag(help: "Print each missed anomaly and each false alert.") var verbose = false
    @Flag(help: "Exit 1 unless F1 >= 0.9 overall, >= 0.8 per kind, and < 1 false alert per series-week (a regression floor; the targets are printed).") var check = false
    @Option(help: "A directory of labelled real series in NAB's layout (labels/windows.json, data/...): adds the NAB-scored report.") var nab: String?
    @Flag(help: "With --nab: also the generic detector's score per file (windows found, false alerts, standard raw score).") var nabFiles = false
    @Flag(help: "With --nab: only the real-data report, not the synthetic corpus.") var nabOnly = false
    @Option(help: "Tuning aid: override a detector parameter, NAME=VALUE (memory, warmup, margin, liveMargin, rateMargin, levelMemory, levelWarmupFactor, anomalyWeight, centerMemory, holdWindows, robustLearning, fatigue, fatigueHalfLifeDays, profileWeight, profileMinDays); repeatable.")
    var set: [String] = []

    var parameters: DetectorParameters {
        get throws {
            var p = DetectorParameters.default
            for assignment in self.set {
                let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, let value = Double(parts[1]), value.isFinite, value >= 0 else { throw ValidationError("--set NAME=VALUE with a number >= 0: \(assignment)") }
                switch parts[0] {
                case "memory": p.memory = max(Int(value), 1)
                case "warmup": p.warmupWindows = Int(value)
                case "margin": p.margin = value
                case "liveMargin": p.liveMargin = value
                case "rateMargin": p.rateMargin = value
                case "levelMemory": p.levelMemory = Int(value)
                case "levelWarmupFactor": p.levelWarmupFactor = Int(value)
                case "anomalyWeight": p.anomalyWeight = min(value, 1)
                case "centerMemory": p.centerMemory = max(Int(value), 1)
                case "holdWindows": p.holdWindows = Int(value)
                case "robustLearning": p.robustLearning = value
                case "fatigue": p.fatigue = max(value, 1)
                case "fatigueHalfLifeDays": p.fatigueHalfLifeDays = value
                case "profileWeight": p.profileWeight = min(value, 1)
                case "profileMinDays": p.profileMinDays = Int(value)
                default: throw ValidationError("--set: unknown parameter \(parts[0])")
                }
            }
            return p
        }
    }

    func run() async throws {
        let started = ContinuousClock.now
        let corpus = Evaluation.corpus(seed: self.seed, count: self.series, days: self.days)
        if self.nabOnly, let nab {
            try self.reportNAB(nab)
            return
        }
        let generated = ContinuousClock.now
        let ours = Evaluation.detectors(corpus, days: self.days, parameters: try self.parameters, verbose: self.verbose)
        let scored = ContinuousClock.now
        let reports = [ours, Evaluation.zScore(corpus, days: self.days), Evaluation.staticThreshold(corpus, days: self.days)]
        print(Evaluation.markdown(reports, seed: self.seed, series: self.series, days: self.days))
        let windows = corpus.reduce(0) { $0 + $1.observations.count }
        print("corpus generated in \(generated - started); \(windows) series-windows scored by the detectors in \(scored - generated)")
        let met = ours.overall.f1 >= 0.95 && ours.falseAlertsPerSeriesWeek <= 0.05
        print("target: synthetic corpus F1 >= 0.95 with <= 0.05 false alerts per series-week: \(String(format: "%.3f", ours.overall.f1)), \(String(format: "%.3f", ours.falseAlertsPerSeriesWeek)) (\(met ? "met" : "not met"))")
        if let nab { try self.reportNAB(nab) }
        if self.check {
            let kindsOK = ours.byKind.values.allSatisfy { $0.f1 >= 0.8 }
            guard ours.overall.f1 >= 0.9, kindsOK, ours.falseAlertsPerSeriesWeek < 1 else {
                print("synthetic corpus below the regression floor")
                throw ExitCode(1)
            }
            print("synthetic corpus above the regression floor")
        }
    }

    func reportNAB(_ nab: String) throws {
        let files = try NABBenchmark.load(directory: nab)
        let p = try self.parameters
        // Parameters are chosen on the tune half only; the check half says whether they generalize.
        var halves: [(String, [NABBenchmark.File])] = [("all \(files.count) files", files)]
        if let split = NABBenchmark.split(directory: nab) {
            for half in ["tune", "check"] {
                let names = Set(split[half] ?? [])
                halves.append(("\(half) half, \(names.count) files", files.filter { names.contains($0.name) }))
            }
        }
        let detectors: [(String, ([Double], [Int64]) -> [Int])] = [
            ("live engine, generic series", NABBenchmark.live(parameters: p)),
        ] + [DetectorMetric.requestRate, .latencyP95, .costPerRequest, .outputTokensPerRequest, .timeToFirstTokenP95].map {
            ("live engine, \($0.name) policy", NABBenchmark.live($0, parameters: p))
        } + [
            ("model alone, live sketches", NABBenchmark.sketchedModel(p)),
            ("model alone, exact windows", NABBenchmark.exactModel(p)),
            ("windowed Gaussian (6400 values, z > 5)", NABBenchmark.windowedGaussian),
            ("z-score (running, z > 4)", NABBenchmark.zScore),
            ("static threshold (probation range +10%)", NABBenchmark.staticThreshold),
            ("null (no alerts)", { _, _ in [] }),
        ]
        var live: [Double] = []
        var liveFalseAlerts: [Double] = []
        for (title, subset) in halves {
            let reports = detectors.map { NABBenchmark.evaluate(subset, detector: $0.0, $0.1) }
            print("")
            print("#### \(title)")
            print(NABBenchmark.markdown(reports, files: subset.count))
            live.append(reports[0].scores[0])
            liveFalseAlerts.append(reports[0].falseAlertsPerSeriesDay)
        }
        let met = live.allSatisfy { $0 >= 72 } && liveFalseAlerts.allSatisfy { $0 <= 0.1 }
        print("target: NAB standard >= 72 on each half and the whole, <= 0.1 false alerts per series-day, through the live engine (generic series): "
              + zip(halves, zip(live, liveFalseAlerts)).map { "\($0.0.0.split(separator: ",")[0]) \(String(format: "%.1f", $0.1.0)) (\(String(format: "%.2f", $0.1.1))/day)" }.joined(separator: ", ")
              + " (\(met ? "met" : "not met"))")
        if self.nabFiles {
            print("")
            print(NABBenchmark.perFile(files, NABBenchmark.live(parameters: p)))
        }
    }
}
