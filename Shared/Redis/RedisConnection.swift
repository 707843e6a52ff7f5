import CHiredis
import ClientSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One blocking hiredis connection, pinned to its own thread (hiredis contexts are not thread-safe, and blocking
/// calls must stay off the cooperative pool). Commands are sent by argv, never through the variadic format API.
public actor RedisConnection: PooledConnection {
    private let executor: ThreadExecutor
    private let context: any RedisTransport
    private let broken = Atomic<Bool>(false)

    public nonisolated var unownedExecutor: UnownedSerialExecutor { self.executor.asUnownedSerialExecutor() }
    public nonisolated var isBroken: Bool { self.broken.load(ordering: .relaxed) }

    /// Connects, authenticates and selects the database.
    public static func connect(_ configuration: RedisConfiguration) async throws(RedisError) -> RedisConnection {
        let executor = ThreadExecutor(name: "redis-connection")
        do {
            return try await RedisConnection.open(configuration, executor: executor)
        } catch {
            executor.shutdown()
            throw error
        }
    }

    private static func open(_ configuration: RedisConfiguration, executor: ThreadExecutor) async throws(RedisError) -> RedisConnection {
        let opened: Result<any RedisTransport, RedisError>
        do {
            opened = try await executor.run {
                Result { () throws(RedisError) -> any RedisTransport in
                    if let tls = configuration.tls { return try TLSRedisContext(configuration, tls: tls) }
                    return try HiredisContext(configuration)
                }
            }
        } catch {
            opened = .failure(RedisError(.connection, "\(error)"))
        }
        let connection = RedisConnection(executor: executor, context: try opened.get())
        if let password = configuration.password {
            var auth: [RedisArgument] = ["AUTH"]
            if let username = configuration.username { auth.append(RedisArgument(username)) }
            auth.append(RedisArgument(password))
            _ = try await connection.command(auth)
        }
        if configuration.database != 0 {
            _ = try await connection.command(["SELECT", RedisArgument(configuration.database)])
        }
        return connection
    }

    private init(executor: ThreadExecutor, context: any RedisTransport) {
        self.executor = executor
        self.context = context
    }

    deinit { self.executor.shutdown() }

    /// Runs one command; an error reply is thrown as `RedisError.Code.server`.
    public func command(_ arguments: [RedisArgument]) throws(RedisError) -> RedisValue {
        let value = try self.run { () throws(RedisError) in try self.context.command(arguments) }
        if case .error(let message) = value { throw RedisError(.server, message) }
        return value
    }

    /// Sends all commands before reading any reply (one round trip). Error replies come back in place.
    public func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisValue] {
        try self.run { () throws(RedisError) in try self.context.pipeline(commands) }
    }

    public func close() async {
        self.broken.store(true, ordering: .relaxed)
        self.context.free()
    }

    /// Marks the connection broken when hiredis reports an I/O or protocol failure: the context is unusable after it.
    private func run<T>(_ body: () throws(RedisError) -> T) throws(RedisError) -> T {
        guard !self.isBroken else { throw RedisError(.connection, "connection is closed") }
        do {
            return try body()
        } catch {
            if error.code == .connection || error.code == .protocolError { self.broken.store(true, ordering: .relaxed) }
            throw error
        }
    }
}

/// A connection's byte pipe: plain (hiredis's own context) or TLS (OpenSSL with hiredis's formatter and reader).
protocol RedisTransport: AnyObject, Sendable {
    func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisValue]
    func free()
}

extension RedisTransport {
    func command(_ arguments: [RedisArgument]) throws(RedisError) -> RedisValue {
        try self.pipeline([arguments])[0]
    }
}

/// Owns one `redisContext`.
final class HiredisContext: RedisTransport, @unchecked Sendable {
    // @unchecked: used only from its connection's thread (the actor's executor).
    private var pointer: UnsafeMutablePointer<redisContext>?

    init(_ configuration: RedisConfiguration) throws(RedisError) {
        guard let c = redisConnectWithTimeout(configuration.host, Int32(configuration.port), timeval(configuration.connectTimeout)) else {
            throw RedisError(.connection, "cannot allocate a hiredis context")
        }
        if c.pointee.err != 0 {
            let message = Self.errorString(c)
            let code = c.pointee.err
            redisFree(c)
            throw RedisError(.connection, "connect to \(configuration.host):\(configuration.port): \(message)", hiredisCode: code)
        }
        _ = redisSetTimeout(c, timeval(configuration.commandTimeout))
        _ = redisEnableKeepAlive(c)
        self.pointer = c
    }

    deinit { self.free() }

    func free() {
        if let pointer { redisFree(pointer) }
        self.pointer = nil
    }

    func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisValue] {
        guard let c = self.pointer else { throw RedisError(.connection, "connection is closed") }
        for arguments in commands {
            guard !arguments.isEmpty else { throw RedisError(.configuration, "empty command") }
            let status = Self.withArgv(arguments) { argc, argv, lengths in
                redisAppendCommandArgv(c, argc, argv, lengths)
            }
            if status != REDIS_OK { throw self.failure(c, "append") }
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            if redisGetReply(c, &raw) != REDIS_OK || raw == nil { throw self.failure(c, "read reply") }
            let reply = raw!.assumingMemoryBound(to: redisReply.self)
            defer { freeReplyObject(raw) }
            replies.append(try Self.convert(reply))
        }
        return replies
    }

    private func failure(_ c: UnsafeMutablePointer<redisContext>, _ what: String) -> RedisError {
        let code = c.pointee.err
        let kind: RedisError.Code = code == REDIS_ERR_PROTOCOL ? .protocolError : .connection
        return RedisError(kind, "\(what): \(Self.errorString(c))", hiredisCode: code)
    }

    static func convert(_ reply: UnsafeMutablePointer<redisReply>) throws(RedisError) -> RedisValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING: return .bulkString(r.str.map { Array(UnsafeRawBufferPointer(start: $0, count: r.len)) } ?? [])
        case REDIS_REPLY_STATUS: return .simpleString(r.str.map { String(cString: $0) } ?? "")
        case REDIS_REPLY_ERROR: return .error(r.str.map { String(cString: $0) } ?? "")
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.integer))
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_ARRAY:
            var values: [RedisValue] = []
            values.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                guard let element = r.element[i] else { values.append(.null); continue }
                values.append(try convert(element))
            }
            return .array(values)
        default: throw RedisError(.protocolError, "unknown reply type \(r.type)")
        }
    }

    /// Lends argv/argvlen arrays pointing into the arguments' bytes for the duration of `body`.
    static func withArgv<T>(_ arguments: [RedisArgument], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> T) -> T {
        // One contiguous buffer holds every argument, so a single allocation backs all the pointers.
        var storage: [UInt8] = []
        storage.reserveCapacity(arguments.reduce(0) { $0 + $1.bytes.count + 1 })
        var offsets: [Int] = []
        var lengths: [Int] = []
        for argument in arguments {
            offsets.append(storage.count)
            lengths.append(argument.bytes.count)
            storage.append(contentsOf: argument.bytes)
            storage.append(0)
        }
        return storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var argv: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    body(Int32(arguments.count), argvBuffer.baseAddress!, lengthBuffer.baseAddress!)
                }
            }
        }
    }

    private static func errorString(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}

func timeval(_ duration: Duration) -> timeval {
    let (seconds, attoseconds) = duration.components
    return Glibc.timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
}
