import Events
import IngestorCore
import Kafka
import Testing

func event(provider: String = "openai", model: String = "gpt-4o", input: Int64 = 1000, cached: Int64? = nil, output: Int64 = 500) -> LLMEvent {
    LLMEvent(
        eventID: "e1", tenantID: "t1", timestamp: EventTimestamp(microsecondsSinceEpoch: 0), provider: provider, model: model,
        inputTokens: input, outputTokens: output, cachedInputTokens: cached, latencyMs: 100, status: .ok)
}

@Suite("Ingestor: normalization and pricing")
struct IngestorUnitTests {
    @Test("a batch whose partition starts past the committed offset is a stale fetch: read again from the committed offset; replays and uncommitted partitions are not")
    func fetchGaps() {
        func m(_ partition: Int32, _ offset: Int64) -> KafkaMessage { KafkaMessage(topic: "raw", partition: partition, offset: offset, key: nil, value: []) }
        let p0 = KafkaTopicPartition(topic: "raw", partition: 0), p1 = KafkaTopicPartition(topic: "raw", partition: 1), p2 = KafkaTopicPartition(topic: "raw", partition: 2)
        // p0: 300... while 200 is committed (200-299 never processed); p1: from its committed offset; p2: a replay from
        // before it; p3: nothing committed yet.
        let batch = [m(0, 301), m(0, 300), m(1, 50), m(1, 51), m(2, 10), m(3, 7)]
        let committed: [KafkaTopicPartition: Int64?] = [p0: 200, p1: 50, p2: 40, KafkaTopicPartition(topic: "raw", partition: 3): Int64?.none]
        let gaps = FetchGap.gaps(in: batch, committed: committed)
        #expect(gaps == [p0: 200])
        #expect(FetchGap.gaps(in: batch, committed: [:]).isEmpty, "without committed offsets nothing is dropped")
        _ = p2
    }

    @Test("only partitions that do not go on where this member left off are checked against the committed offsets")
    func fetchGapsChecked() {
        func m(_ partition: Int32, _ offset: Int64) -> KafkaMessage { KafkaMessage(topic: "raw", partition: partition, offset: offset, key: nil, value: []) }
        let p = (0...3).map { KafkaTopicPartition(topic: "raw", partition: Int32($0)) }
        // p0 goes on at 300 as expected; p1 starts past where this member left off (a stale fetch, perhaps); p2 is
        // before it (a seek back); p3 was never processed here.
        let batch = [m(0, 301), m(0, 300), m(1, 60), m(2, 10), m(3, 7)]
        #expect(FetchGap.unverified(in: batch, expected: [p[0]: 300, p[1]: 50, p[2]: 40]) == [p[1], p[2], p[3]])
        #expect(FetchGap.unverified(in: [], expected: [p[0]: 300]).isEmpty)
    }

    @Test("providers and models take one canonical spelling", arguments: [
        ("OpenAI", "GPT-4o", "openai", "gpt-4o"),
        ("openai", "openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("Bedrock", "anthropic.claude-3-haiku", "aws.bedrock", "anthropic.claude-3-haiku"),
        ("anthropic", "claude-sonnet-4-0", "anthropic", "claude-sonnet-4"),
        ("azure_openai", "gpt-4o-2024-08-06", "azure.ai.openai", "gpt-4o-2024-08-06"),
        ("some-new-provider", "Model-X", "some-new-provider", "model-x"),
    ])
    func normalize(provider: String, model: String, expectedProvider: String, expectedModel: String) {
        let e = EventNormalizer().normalize(event(provider: provider, model: model))
        #expect(e.provider == expectedProvider)
        #expect(e.model == expectedModel)
    }

    @Test("cost is exact in nano-dollars, cached input at its own rate, rounded once")
    func cost() {
        let price = ModelPrice(input: 2_500_000, cachedInput: 1_250_000, output: 10_000_000) // gpt-4o
        // 1000 input (200 cached) + 500 output: 800 * 2.5 + 200 * 1.25 + 500 * 10 = 2000 + 250 + 5000 = 7250 micro-dollars
        #expect(price.costNanos(of: event(input: 1000, cached: 200, output: 500)) == 7_250_000)
        // 1 input token of gpt-4o-mini = 150 nano-dollars (micro-dollars rounded it to 0).
        let mini = ModelPrice(input: 150_000, cachedInput: 75_000, output: 600_000)
        #expect(mini.costNanos(of: event(input: 1, output: 0)) == 150)
        #expect(mini.costNanos(of: event(input: 1_000_000_000, output: 1_000_000_000)) == 750_000_000_000)
        // A 12-token embedding at $0.02/Mtok is $0.00000024, and a million of them $0.24, not $0.
        let embedding = ModelPrice(input: 20_000, cachedInput: 20_000, output: 0)
        let one = embedding.costNanos(of: event(input: 12, output: 0))
        #expect(one == 240)
        #expect(LLMEvent.decimalUSD(nanos: one * 1_000_000) == "0.24")
        // Rounded half up once, below a nano-dollar: $0.0375/Mtok x 1 token = 37.5 nano-dollars.
        #expect(ModelPrice(input: 37_500, cachedInput: 0, output: 0).costNanos(of: event(input: 1, output: 0)) == 38)
    }

    @Test("a tenant's own price wins over the default; unknown models have none")
    func priceLookup() {
        var table = PriceTable()
        table.set(ModelPrice(input: 1, cachedInput: 1, output: 1), provider: "openai", model: "gpt-4o")
        table.set(ModelPrice(input: 9, cachedInput: 9, output: 9), tenant: "acme", provider: "openai", model: "gpt-4o")
        #expect(table.price(tenant: "acme", provider: "openai", model: "gpt-4o")?.inputMicrosPerMTok == 9)
        #expect(table.price(tenant: "other", provider: "openai", model: "gpt-4o")?.inputMicrosPerMTok == 1)
        #expect(table.price(tenant: "acme", provider: "openai", model: "gpt-9") == nil)
    }
}
