/// Names the API, the OpenAPI document and the checks on input share, defined once.
public enum Vocabulary {
    /// The metrics the detector scores (`DetectorMetric` names them; a test keeps the two equal).
    public static let detectorMetrics = ["request_rate", "error_rate", "latency_p95", "ttft_p95", "cost_per_request", "output_tokens_per_request"]
    /// What a threshold rule can watch.
    public static let ruleMetrics = detectorMetrics + ["cost_per_hour"]
    /// What an anomaly's `metric` can be: the detector's, a rule's, or a budget's.
    public static let anomalyMetrics = ruleMetrics + ["spend", "spend_forecast"]
    public static let severities = ["info", "warning", "critical"]

    /// `"a", "b"`: a list for a JSON enum in the OpenAPI document.
    public static func jsonList(_ names: [String]) -> String { names.map { "\"\($0)\"" }.joined(separator: ", ") }
}
