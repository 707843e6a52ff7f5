import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Client of the local broker's control port (deploy/mockbroker/mockbroker.c): creates topics and injects faults.
public enum MockBrokerControl {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Creates `topic` with `partitions` partitions (on the stack's broker, or the one whose control is `control`).
    public static func createTopic(_ topic: String, partitions: Int, control: String? = nil) throws {
        try self.send("CREATE \(topic) \(partitions)", control: control)
    }

    public static func setBroker(_ id: Int, up: Bool, control: String? = nil) throws {
        try self.send("\(up ? "UP" : "DOWN") \(id)", control: control)
    }

    /// Sends one command line and throws unless the broker answers OK.
    public static func send(_ command: String, control: String? = nil) throws {
        let address = try control ?? TestEnvironment.require("TW_KAFKA_MOCK_CONTROL")
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw Failure(description: "bad control address \(address)") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr(String(parts[0]))
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(description: "cannot connect to broker control at \(address)") }
        let line = Array((command + "\n").utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var reply = [UInt8](repeating: 0, count: 512)
        var got = 0
        while got < reply.count {
            let n = reply.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n <= 0 { break }
            got += n
            if reply[..<got].contains(UInt8(ascii: "\n")) { break }
        }
        let text = String(decoding: reply[..<got], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text == "OK" else { throw Failure(description: "broker control '\(command)': \(text)") }
    }
}
