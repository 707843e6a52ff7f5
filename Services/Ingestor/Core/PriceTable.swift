import Events
import Postgres

/// A model's price in micro-dollars per million tokens.
public struct ModelPrice: Sendable, Hashable {
    public var inputMicrosPerMTok: Int64
    public var cachedInputMicrosPerMTok: Int64
    public var outputMicrosPerMTok: Int64

    public init(input: Int64, cachedInput: Int64, output: Int64) {
        self.inputMicrosPerMTok = input
        self.cachedInputMicrosPerMTok = cachedInput
        self.outputMicrosPerMTok = output
    }

    /// The cost of a call in nano-dollars, rounded half up once at the end (so no rounding error accumulates
    /// across the three token kinds). Cached input tokens are part of `input_tokens` and priced at the cached rate;
    /// reasoning tokens are part of `output_tokens` (as the providers report them) and not counted again.
    public func costNanos(of event: LLMEvent) -> Int64 {
        let cached = min(event.cachedInputTokens ?? 0, event.inputTokens)
        let uncached = event.inputTokens - cached
        // Tokens <= 1e9 (event limits) and prices <= `maxMicrosPerMTok` (checked on load) keep every product and the
        // sum below 9.2e18; the reporting operations make a price row that slipped past those bounds saturate
        // instead of trapping.
        var total: Int64 = 0
        for (tokens, price) in [(uncached, self.inputMicrosPerMTok), (cached, self.cachedInputMicrosPerMTok), (event.outputTokens, self.outputMicrosPerMTok)] {
            let (product, overflow) = max(tokens, 0).multipliedReportingOverflow(by: max(price, 0))
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow, !overflow2 else { return .max / 1_000 }
            total = sum
        }
        // micro-dollars per Mtok x tokens = 1e-12 USD; a nano-dollar is 1,000 of them.
        return total / 1_000 + (total % 1_000 >= 500 ? 1 : 0)
    }

    /// Largest price per million tokens a row may hold: 2,000,000,000 micro-dollars ($2,000/Mtok, ten times the
    /// dearest model listed today). With tokens <= 1e9 each product stays <= 2e18 and three of them < Int64.max.
    public static let maxMicrosPerMTok: Int64 = 2_000_000_000

    public var isInRange: Bool {
        [self.inputMicrosPerMTok, self.cachedInputMicrosPerMTok, self.outputMicrosPerMTok].allSatisfy { (0...Self.maxMicrosPerMTok).contains($0) }
    }
}

/// Prices by (tenant, provider, model): a tenant's own row first, then the default row (tenant `''`).
public struct PriceTable: Sendable {
    struct Key: Hashable {
        var tenant: String
        var provider: String
        var model: String
    }

    private var prices: [Key: ModelPrice] = [:]
    /// Tenants with rows of their own: the others skip the first lookup (two hashes of three strings an event).
    private var overridden: Set<String> = []

    public init() {}

    public mutating func set(_ price: ModelPrice, tenant: String = "", provider: String, model: String) {
        self.prices[Key(tenant: tenant, provider: provider, model: model)] = price
        if !tenant.isEmpty { self.overridden.insert(tenant) }
    }

    public var count: Int { self.prices.count }

    public func price(tenant: String, provider: String, model: String) -> ModelPrice? {
        if self.overridden.contains(tenant), let own = self.prices[Key(tenant: tenant, provider: provider, model: model)] { return own }
        return self.prices[Key(tenant: "", provider: provider, model: model)]
    }

    /// Reads the whole `prices` table.
    public static func load(from postgres: PostgresClient) async throws -> PriceTable {
        var table = PriceTable()
        let rows = try await postgres.query("""
            SELECT tenant_id, provider, model, input_micros_per_mtok, cached_input_micros_per_mtok, output_micros_per_mtok FROM prices
            """)
        for row in rows {
            let price = ModelPrice(
                input: try row.decode("input_micros_per_mtok"), cachedInput: try row.decode("cached_input_micros_per_mtok"),
                output: try row.decode("output_micros_per_mtok"))
            // A row out of range (an operator's typo) is left out, so its model is priced as unknown (flagged on
            // every event) rather than with a cost that cannot be right.
            guard price.isInRange else { continue }
            table.set(price, tenant: try row.decode("tenant_id"), provider: try row.decode("provider"), model: try row.decode("model"))
        }
        return table
    }
}
