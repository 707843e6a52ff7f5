/// List prices of common models (USD per million tokens: input, cached input, output), seeded into the `prices`
/// table as defaults for every tenant. Operators and tenants override them with their own rows; the ingestor
/// reloads the table periodically.
public enum BuiltInPrices {
    public static let table: [(provider: String, model: String, input: Double, cachedInput: Double, output: Double)] = [
        ("openai", "gpt-4o", 2.50, 1.25, 10.00),
        ("openai", "gpt-4o-mini", 0.15, 0.075, 0.60),
        ("openai", "gpt-4.1", 2.00, 0.50, 8.00),
        ("openai", "gpt-4.1-mini", 0.40, 0.10, 1.60),
        ("openai", "gpt-4.1-nano", 0.10, 0.025, 0.40),
        ("openai", "o3", 2.00, 0.50, 8.00),
        ("openai", "o4-mini", 1.10, 0.275, 4.40),
        ("openai", "text-embedding-3-small", 0.02, 0.02, 0.00),
        ("openai", "text-embedding-3-large", 0.13, 0.13, 0.00),
        ("anthropic", "claude-opus-4", 15.00, 1.50, 75.00),
        ("anthropic", "claude-sonnet-4", 3.00, 0.30, 15.00),
        ("anthropic", "claude-3-7-sonnet", 3.00, 0.30, 15.00),
        ("anthropic", "claude-3-5-sonnet", 3.00, 0.30, 15.00),
        ("anthropic", "claude-3-5-haiku", 0.80, 0.08, 4.00),
        ("anthropic", "claude-3-haiku", 0.25, 0.03, 1.25),
        ("gcp.gemini", "gemini-2.5-pro", 1.25, 0.31, 10.00),
        ("gcp.gemini", "gemini-2.5-flash", 0.30, 0.075, 2.50),
        ("gcp.gemini", "gemini-2.0-flash", 0.10, 0.025, 0.40),
        ("aws.bedrock", "anthropic.claude-3-5-sonnet", 3.00, 0.30, 15.00),
        ("aws.bedrock", "anthropic.claude-3-haiku", 0.25, 0.03, 1.25),
        ("aws.bedrock", "amazon.nova-pro", 0.80, 0.20, 3.20),
        ("aws.bedrock", "amazon.nova-lite", 0.06, 0.015, 0.24),
        ("mistral_ai", "mistral-large", 2.00, 2.00, 6.00),
        ("mistral_ai", "mistral-small", 0.10, 0.10, 0.30),
    ]

    static func micros(_ usd: Double) -> Int64 { Int64((usd * 1_000_000).rounded()) }

    /// `INSERT` of the table as defaults; existing rows (an operator's edits) are kept.
    static var insertSQL: String {
        let rows = table.map { "('', '\($0.provider)', '\($0.model)', \(micros($0.input)), \(micros($0.cachedInput)), \(micros($0.output)))" }
        return """

            INSERT INTO prices (tenant_id, provider, model, input_micros_per_mtok, cached_input_micros_per_mtok, output_micros_per_mtok)
            VALUES \(rows.joined(separator: ",\n    "))
            ON CONFLICT DO NOTHING;
            """
    }
}
