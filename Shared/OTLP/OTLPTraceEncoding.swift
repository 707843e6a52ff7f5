import Events

/// Writes a request in either encoding, with the fields this module models: for tests, benchmarks and the
/// fuzzer's round-trip property. (Applications use an OpenTelemetry SDK.)
extension OTLPTraceRequest {
    public func protobuf() -> [UInt8] {
        var w = ProtobufWriter()
        for rs in self.resourceSpans {
            w.messageField(1) { w in
                w.messageField(1) { w in Self.writeAttributes(rs.resource, field: 1, into: &w) }
                for run in Self.scopeRuns(rs.spans) {
                  w.messageField(2) { w in
                    if !run.scope.isEmpty { w.messageField(1) { w in w.stringField(1, run.scope) } }
                    for span in run.spans {
                        w.messageField(2) { w in
                            w.bytesField(1, span.traceID)
                            w.bytesField(2, span.spanID)
                            w.stringField(5, span.name)
                            w.varintField(6, UInt64(UInt32(bitPattern: span.kind)))
                            w.fixed64Field(7, span.startTimeUnixNano)
                            w.fixed64Field(8, span.endTimeUnixNano)
                            Self.writeAttributes(span.attributes, field: 9, into: &w)
                            if let first = span.firstChunkUnixNano {
                                w.messageField(11) { w in
                                    w.fixed64Field(1, first)
                                    w.stringField(2, "gen_ai.content.completion.chunk")
                                }
                            }
                            w.messageField(15) { w in
                                if !span.statusMessage.isEmpty { w.stringField(2, span.statusMessage) }
                                w.varintField(3, UInt64(UInt32(bitPattern: span.statusCode)))
                            }
                        }
                    }
                  }
                }
            }
        }
        return w.bytes
    }

    /// Consecutive spans of one instrumentation scope, each written as one `ScopeSpans`.
    static func scopeRuns(_ spans: [OTLPSpan]) -> [(scope: String, spans: ArraySlice<OTLPSpan>)] {
        var runs: [(scope: String, spans: ArraySlice<OTLPSpan>)] = []
        var start = spans.startIndex
        while start < spans.endIndex {
            let scope = spans[start].scope
            let end = spans[start...].firstIndex { $0.scope != scope } ?? spans.endIndex
            runs.append((scope, spans[start..<end]))
            start = end
        }
        return runs
    }

    /// KeyValues: field 1 of a resource, field 9 of a span.
    static func writeAttributes(_ attributes: OTLPAttributes, field: UInt64, into w: inout ProtobufWriter) {
        for (key, value) in attributes.entries {
            w.messageField(field) { kv in
                kv.stringField(1, key)
                kv.messageField(2) { v in
                    switch value {
                    case .string(let s): v.stringField(1, s)
                    case .bool(let b): v.varintField(2, b ? 1 : 0)
                    case .int(let i): v.varintField(3, UInt64(bitPattern: i))
                    case .double(let d): v.fixed64Field(4, d.bitPattern)
                    }
                }
            }
        }
    }

    public func json() -> [UInt8] {
        var out: [UInt8] = []
        func raw(_ s: String) { out.append(contentsOf: Array(s.utf8)) }
        func attributes(_ a: OTLPAttributes) {
            raw("[")
            for (n, (key, value)) in a.entries.enumerated() {
                if n > 0 { raw(",") }
                raw("{\"key\":")
                writeJSONString(key, into: &out)
                raw(",\"value\":{")
                switch value {
                case .string(let s): raw("\"stringValue\":"); writeJSONString(s, into: &out)
                case .bool(let b): raw("\"boolValue\":\(b)")
                case .int(let i): raw("\"intValue\":\"\(i)\"")
                case .double(let d): raw(d.isFinite ? "\"doubleValue\":\(d)" : "\"doubleValue\":\"\(d.isNaN ? "NaN" : d > 0 ? "Infinity" : "-Infinity")\"")
                }
                raw("}}")
            }
            raw("]")
        }
        raw("{\"resourceSpans\":[")
        for (r, rs) in self.resourceSpans.enumerated() {
            if r > 0 { raw(",") }
            raw("{\"resource\":{\"attributes\":")
            attributes(rs.resource)
            raw("},\"scopeSpans\":[")
            for (runIndex, run) in Self.scopeRuns(rs.spans).enumerated() {
              if runIndex > 0 { raw(",") }
              raw("{\"scope\":{\"name\":")
              writeJSONString(run.scope, into: &out)
              raw("},\"spans\":[")
              for (n, span) in run.spans.enumerated() {
                if n > 0 { raw(",") }
                raw("{\"traceId\":\"\(GenAISpanMapping.hex(span.traceID))\",\"spanId\":\"\(GenAISpanMapping.hex(span.spanID))\",\"name\":")
                writeJSONString(span.name, into: &out)
                raw(",\"kind\":\(span.kind),\"startTimeUnixNano\":\"\(span.startTimeUnixNano)\",\"endTimeUnixNano\":\"\(span.endTimeUnixNano)\",\"attributes\":")
                attributes(span.attributes)
                if let first = span.firstChunkUnixNano {
                    raw(",\"events\":[{\"timeUnixNano\":\"\(first)\",\"name\":\"gen_ai.content.completion.chunk\"}]")
                }
                raw(",\"status\":{\"code\":\(span.statusCode)")
                if !span.statusMessage.isEmpty { raw(",\"message\":"); writeJSONString(span.statusMessage, into: &out) }
                raw("}}")
              }
              raw("]}")
            }
            raw("]}")
        }
        raw("]}")
        return out
    }
}
