import Foundation
import Logging
import Redis
import Testing
import TestSupport

@Suite("Redis over TLS against the local server", .serialized, .timeLimit(.minutes(2)))
struct RedisTLSTests {
    func client(caFile: String?, serverName: String? = nil) throws -> RedisClient {
        var config = try RedisConfiguration(url: try TestEnvironment.require("TW_TEST_REDIS_TLS_URL"))
        config.tls = RedisTLSConfiguration(caFile: caFile, serverName: serverName)
        config.maxConnections = 2
        return RedisClient(configuration: config, logger: Logger(label: "redis-tls-tests"))
    }

    @Test("rediss:// with the server's CA: commands, pipelines and a reply larger than one TLS read")
    func trusted() async throws {
        let redis = try self.client(caFile: try TestEnvironment.require("TW_TEST_TLS_CA_FILE"))
        let key = TestEnvironment.unique("tls")
        #expect(try await redis.command("PING").string == "PONG")
        let big = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(try await redis.command(["SET", RedisArgument(key), RedisArgument(big), "EX", "60"]).string == "OK")
        #expect(try await redis.command("GET", "\(key)") == .bulkString(big))
        let replies = try await redis.pipeline((0..<50).map { _ -> [RedisArgument] in ["INCR", RedisArgument("\(key)-n")] })
        #expect(replies.last == .integer(50))
        #expect(try await redis.command("EXPIRE", "\(key)-n", "60") == .integer(1))
        await #expect(throws: RedisError.self) { try await redis.command("NOSUCHCOMMAND") }
        #expect(try await redis.command("PING").string == "PONG", "an error reply leaves the connection usable")
        // The plain and the TLS listener are the same server.
        let plain = try makeRedis()
        #expect(try await plain.command("GET", "\(key)-n").string == "50")
        await plain.close()
        await redis.close()
    }

    @Test("a server certificate the client does not trust, or for another name, is refused with the reason")
    func untrusted() async throws {
        let systemCAs = try self.client(caFile: nil)
        await #expect { try await systemCAs.command("PING") } throws: { error in
            String(describing: error).contains("certificate not trusted")
        }
        await systemCAs.close()
        let wrongName = try self.client(caFile: try TestEnvironment.require("TW_TEST_TLS_CA_FILE"), serverName: "redis.example.com")
        await #expect { try await wrongName.command("PING") } throws: { error in
            String(describing: error).contains("certificate not trusted")
        }
        await wrongName.close()
    }
}
