/// Which stored rows answer a query: its filters (dimension -> value) and the dimensions it breaks down by pick the
/// smallest stored level holding them all (`SeriesKey.levels`); the rows of that level matching the filters add up to
/// the answer, each event counted once. The read model and Postgres apply the same rule, as a predicate and as SQL.
public struct SeriesSelection: Sendable, Equatable {
    public var filters: [SeriesDimension: String]
    public var groupBy: Set<SeriesDimension>

    public init(filters: [SeriesDimension: String] = [:], groupBy: Set<SeriesDimension> = []) {
        self.filters = filters
        self.groupBy = groupBy
    }

    /// The tenant's total row.
    public static let total = SeriesSelection()
    /// `app = '' AND environment = '' AND provider = '' AND model = ''`: the SQL of the total row.
    public static let totalSQL = SeriesSelection.total.sqlCondition(firstParameter: 1).0

    /// The smallest stored level holding the filters and the breakdown; nil when none does (a promoted tag with
    /// another dimension: tags are not crossed with the rest).
    public var storedLevel: Set<SeriesDimension>? {
        let needed = Set(self.filters.keys).union(self.groupBy)
        return SeriesKey.levels.first { needed.isSubset(of: $0) }
    }

    var level: Set<SeriesDimension> { self.storedLevel ?? [] }

    public func matches(_ key: SeriesKey) -> Bool {
        self.storedLevel != nil && key.level == self.level && self.filters.allSatisfy { key[$0.key] == $0.value }
    }

    /// The rows as SQL (unqualified column names) with its parameters, numbered from `n`.
    public func sqlCondition(firstParameter n: Int) -> (String, [String]) {
        guard let level = self.storedLevel else { return ("false", []) }
        var conditions: [String] = []
        var parameters: [String] = []
        for d in SeriesDimension.allCases {
            if !level.contains(d) {
                conditions.append("\(d.rawValue) = ''")
            } else if let value = self.filters[d] {
                parameters.append(value)
                conditions.append("\(d.rawValue) = $\(n + parameters.count - 1)")
            } else {
                conditions.append("\(d.rawValue) <> ''")
            }
        }
        return (conditions.joined(separator: " AND "), parameters)
    }
}
