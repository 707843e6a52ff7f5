/// Puts provider and model names in one canonical form, so one model is one series however clients spell it.
///
/// Providers follow the OpenTelemetry `gen_ai.provider.name` values; common other spellings map to them. Models are
/// lowercased, a leading `<provider>/` (as routers such as LiteLLM and OpenRouter write it) is removed, and a few
/// well-known aliases map to the model's canonical name. Dated snapshots (`gpt-4o-2024-08-06`) stay as they are:
/// they are distinct models, priced separately when their prices differ.
public struct EventNormalizer: Sendable {
    public var providerAliases: [String: String] = [
        "azure": "azure.ai.openai", "azure_openai": "azure.ai.openai", "azure-openai": "azure.ai.openai",
        "bedrock": "aws.bedrock", "aws_bedrock": "aws.bedrock", "amazon-bedrock": "aws.bedrock",
        "google": "gcp.gemini", "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "vertexai": "gcp.vertex_ai",
        "mistral": "mistral_ai", "mistralai": "mistral_ai", "cohere": "cohere", "groq": "groq", "deepseek": "deepseek",
        "x.ai": "x_ai", "xai": "x_ai",
    ]
    public var modelAliases: [String: String] = [
        "gpt4o": "gpt-4o", "gpt-4o-latest": "gpt-4o", "chatgpt-4o-latest": "gpt-4o",
        "claude-sonnet-4-0": "claude-sonnet-4", "claude-opus-4-0": "claude-opus-4",
        "claude-3-5-sonnet-latest": "claude-3-5-sonnet", "claude-3-7-sonnet-latest": "claude-3-7-sonnet",
        "claude-3-5-haiku-latest": "claude-3-5-haiku",
    ]

    /// `gen_ai.provider.name` values (OpenTelemetry GenAI conventions) and routers that prefix model names.
    static let knownProviders: Set<String> = [
        "openai", "anthropic", "aws.bedrock", "azure.ai.openai", "azure.ai.inference", "gcp.gemini", "gcp.vertex_ai", "gcp.gen_ai",
        "mistral_ai", "cohere", "groq", "deepseek", "x_ai", "perplexity", "ibm.watsonx.ai", "openrouter",
    ]

    public init() {}

    public func normalize(_ event: LLMEvent) -> LLMEvent {
        var e = event
        e.provider = self.provider(event.provider)
        e.model = self.model(event.model, provider: event.provider)
        e.operation = lowercase(e.operation)
        if let errorType = e.errorType { e.errorType = lowercase(errorType) }
        return e
    }

    /// The canonical provider name. Query filters go through this too, so a filter finds what ingest stored.
    public func provider(_ name: String) -> String {
        let provider = lowercase(name)
        return self.providerAliases[provider] ?? provider
    }

    /// The canonical model name; `provider` is the name as given (its prefix is stripped in either spelling).
    /// With no provider (a query filtering by model alone), a `<known provider>/` prefix is stripped.
    public func model(_ name: String, provider: String?) -> String {
        var model = lowercase(name)
        // Only a name with a '/' can carry a provider prefix (most have none: no candidates are made then).
        if model.utf8.contains(UInt8(ascii: "/")) {
            let given = provider.map(lowercase)
            let candidates = given.map { [self.provider($0), $0] } ?? Array(Self.knownProviders.union(self.providerAliases.keys).union(self.providerAliases.values))
            for p in candidates where model.hasPrefix(p + "/") {
                model.removeFirst(p.count + 1)
                break
            }
        }
        return self.modelAliases[model] ?? model
    }
}

/// `text.lowercased()`, without making a new string when it has no uppercase ASCII letter and no non-ASCII byte (the
/// usual provider, model and operation names; this runs for every event).
func lowercase(_ text: String) -> String {
    for b in text.utf8 where b >= 0x80 || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) { return text.lowercased() }
    return text
}
