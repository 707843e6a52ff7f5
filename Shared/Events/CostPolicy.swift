/// Which cost an event keeps when its client sent one: a tenant setting (`cost_policy`), applied by the ingestor.
///
/// Some instrumentations send a cost of 0 for models missing from their own price file (openlit does for gpt-4o);
/// taken as it is, that 0 would silently zero the spend of every such call. The default therefore prices a call
/// from Tokenwatch's table when the client's cost is 0 while tokens were used and the table knows the model.
public enum CostPolicy: String, Sendable, CaseIterable, Codable {
    /// The client's cost, except a 0 for a call that used tokens of a model the price table knows. Default.
    case clientUnlessZero = "client_unless_zero"
    /// The client's cost whenever it sent one (it knows its negotiated prices).
    case client
    /// The price table's cost whenever it knows the model; the client's only for models it does not know.
    case priceTable = "price_table"

    public static let `default` = CostPolicy.clientUnlessZero

    /// Where an event's cost came from, recorded per event (header `tw-cost-source` on llm.events.v1) and counted.
    public enum Source: String, Sendable, CaseIterable {
        /// The client's cost.
        case client
        /// No client cost; the price table's.
        case priceTable = "price_table"
        /// The client's cost was 0 for a call that used tokens; the price table's instead (`client_unless_zero`).
        case priceTableOverClientZero = "price_table_over_client_zero"
        /// The tenant's policy prefers the price table to the client's cost (`price_table`).
        case priceTableOverClient = "price_table_over_client"
        /// No client cost and a model the table does not know: 0, flagged.
        case unknownModel = "unknown_model"
    }

    /// The cost to keep, in nano-dollars, and where it came from. `tablePrice` is the price table's cost of the
    /// call, nil when the table does not know the model.
    public func resolve(clientCost: Int64?, tablePrice: Int64?, usedTokens: Bool) -> (nanos: Int64, source: Source) {
        switch (clientCost, tablePrice) {
        case (nil, let table?): return (table, .priceTable)
        case (nil, nil): return (0, .unknownModel)
        case (let client?, nil): return (client, .client)
        case (let client?, let table?):
            switch self {
            case .client: return (client, .client)
            case .priceTable: return (table, .priceTableOverClient)
            case .clientUnlessZero: return client == 0 && usedTokens ? (table, .priceTableOverClientZero) : (client, .client)
            }
        }
    }
}
