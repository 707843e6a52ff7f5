import Foundation
import Logging
import Redis
import Testing
import TestSupport

func makeRedis(maxConnections: Int = 4, commandTimeout: Duration = .seconds(2)) throws -> RedisClient {
    var config = try RedisConfiguration(url: try TestEnvironment.redisURL())
    config.maxConnections = maxConnections
    config.commandTimeout = commandTimeout
    return RedisClient(configuration: config, logger: Logger(label: "redis-tests"))
}

@Suite("Redis against the local server", .serialized, .timeLimit(.minutes(2)))
struct RedisIntegrationTests {
    @Test("strings, integers, arrays, nil and error replies")
    func replies() async throws {
        let redis = try makeRedis()
        let key = TestEnvironment.unique("k")
        #expect(try await redis.command("GET", "\(key)") == .null)
        #expect(try await redis.command("SET", "\(key)", "hello", "EX", "60").string == "OK")
        #expect(try await redis.command("GET", "\(key)").string == "hello")
        #expect(try await redis.command("SET", "\(key)", "other", "NX") == .null, "NX on an existing key")
        let ttl = try await redis.command("TTL", "\(key)").int
        #expect(ttl.map { $0 > 0 && $0 <= 60 } == true)
        #expect(try await redis.command("INCRBY", "\(key)-n", "5") == .integer(5))
        #expect(try await redis.command("MGET", "\(key)", "\(key)-missing", "\(key)-n") == .array([.bulkString(Array("hello".utf8)), .null, .bulkString(Array("5".utf8))]))
        let binary: [UInt8] = [0, 255, 10, 13, 0]
        try await redis.command(["SET", RedisArgument("\(key)-bin"), RedisArgument(binary)])
        #expect(try await redis.command("GET", "\(key)-bin") == .bulkString(binary))
        await #expect(throws: RedisError.self) { try await redis.command("INCR", "\(key)") }
        do {
            try await redis.command("NOSUCHCOMMAND")
            Issue.record("expected an error reply")
        } catch let error as RedisError {
            #expect(error.code == .server && !error.isRetriable && error.message.contains("unknown command"))
        }
        try await redis.command("DEL", "\(key)", "\(key)-n", "\(key)-bin")
        await redis.close()
    }

    @Test("a pipeline sends many commands and returns replies in order, errors in place")
    func pipelining() async throws {
        let redis = try makeRedis()
        let key = TestEnvironment.unique("p")
        var commands: [[RedisArgument]] = (0..<1000).map { ["RPUSH", "\(key)", "\($0)"] }
        commands.append(["INCR", "\(key)"])  // wrong type: an error reply in the middle
        commands.append(["LLEN", "\(key)"])
        let replies = try await redis.pipeline(commands)
        #expect(replies.count == 1002)
        #expect(replies[999] == .integer(1000))
        if case .error(let message) = replies[1000] { #expect(message.contains("WRONGTYPE")) } else { Issue.record("expected an error reply") }
        #expect(replies[1001] == .integer(1000))
        let range = try await redis.command("LRANGE", "\(key)", "0", "2")
        #expect(range.array?.compactMap(\.string) == ["0", "1", "2"])
        try await redis.command("DEL", "\(key)")
        await redis.close()
    }

    @Test("the pool serves many concurrent callers with few connections")
    func pool() async throws {
        var config = try RedisConfiguration(url: try TestEnvironment.redisURL())
        config.maxConnections = 3
        // 200 callers queue for 3 connections: on a loaded machine (every suite starts at once) the last may wait
        // longer than the default 5 s; what is checked is that they are all served, by few connections.
        config.leaseTimeout = .seconds(60)
        let redis = RedisClient(configuration: config, logger: Logger(label: "redis-tests"))
        let key = TestEnvironment.unique("c")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<200 { group.addTask { try await redis.command("INCR", "\(key)") } }
            try await group.waitForAll()
        }
        #expect(try await redis.command("GET", "\(key)").int == 200)
        try await redis.command("DEL", "\(key)")
        await redis.close()
    }

    @Test("a command past its timeout fails as retriable and the client recovers")
    func commandTimeout() async throws {
        let redis = try makeRedis(maxConnections: 1, commandTimeout: .milliseconds(300))
        let key = TestEnvironment.unique("b")
        do {
            // BLPOP blocks for 2 s on an empty list, longer than the 300 ms command timeout.
            _ = try await redis.withConnection { try await $0.command(["BLPOP", RedisArgument(key), "2"]) }
            Issue.record("expected a timeout")
        } catch let error as RedisError {
            #expect(error.code == .connection && error.isRetriable)
        }
        #expect(try await redis.command("PING").string == "PONG")
        await redis.close()
    }

    @Test("the client reconnects after the server restarts")
    func reconnect() async throws {
        // The second Redis of the stack: restarting it wipes it, which other suites running meanwhile must not see.
        var config = try RedisConfiguration(url: try TestEnvironment.require("TW_REDIS_AUX_URL"))
        config.maxConnections = 2
        let redis = RedisClient(configuration: config, logger: Logger(label: "redis-tests"))
        let key = TestEnvironment.unique("r")
        try await redis.command("SET", "\(key)", "before")
        #expect(try await redis.command("GET", "\(key)").string == "before")

        try restartRedis()

        // Pooled connections are dead now; the client notices and reconnects.
        try await redis.command("SET", "\(key)", "after")
        #expect(try await redis.command("GET", "\(key)").string == "after")
        #expect(await redis.ping())
        await redis.close()
    }
}

/// Restarts the stack's second Redis on the same port through deploy/stack.sh.
func restartRedis() throws {
    let state = try TestEnvironment.require("TW_STATE_DIR")
    try Subprocess.run(["bash", Subprocess.projectRoot + "/deploy/stack.sh", "restart-redis-aux"], environment: ["TW_STATE_DIR": state])
}
