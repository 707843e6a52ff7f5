import CHiredis
import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

/// TLS for `rediss://` connections.
public struct RedisTLSConfiguration: Sendable {
    /// PEM file of the CA(s) to trust; nil trusts the system's store.
    public var caFile: String?
    /// Client certificate chain and key (PEM), for servers that require mutual TLS.
    public var certificateFile: String?
    public var keyFile: String?
    /// Name checked against the server's certificate (and sent as SNI). Default: the URL's host.
    public var serverName: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }
}

/// One Redis connection over TLS. Debian's hiredis (0.14) has no TLS, so this does the I/O itself with OpenSSL and
/// keeps hiredis for what it is good at: formatting commands (`redisFormatCommandArgv`) and parsing replies
/// (`redisReader`). Blocking, with the socket's timeouts; used only from its connection's thread, like
/// `HiredisContext`.
final class TLSRedisContext: RedisTransport, @unchecked Sendable {
    // @unchecked: used only from its connection's thread (the actor's executor).
    private var fd: Int32 = -1
    private var context: OpaquePointer?
    private var ssl: OpaquePointer?
    private var reader: UnsafeMutablePointer<redisReader>?

    init(_ configuration: RedisConfiguration, tls: RedisTLSConfiguration) throws(RedisError) {
        do {
            try self.connect(configuration, tls: tls)
        } catch {
            self.free()
            throw error
        }
    }

    deinit { self.free() }

    private func connect(_ configuration: RedisConfiguration, tls: RedisTLSConfiguration) throws(RedisError) {
        let target = "\(configuration.host):\(configuration.port)"
        self.fd = try Self.tcpConnect(host: configuration.host, port: configuration.port, timeout: configuration.connectTimeout)
        Self.setTimeouts(self.fd, configuration.commandTimeout)

        guard let context = SSL_CTX_new(TLS_client_method()) else { throw Self.sslError("TLS context for \(target)") }
        self.context = context
        _ = tw_ssl_ctx_min_tls12(context)
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let ca = tls.caFile {
            guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else { throw Self.sslError("load CA file \(ca)") }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw Self.sslError("load the system CA store") }
        }
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else { throw Self.sslError("load client certificate \(certificate)") }
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else { throw Self.sslError("load client key \(key)") }
        }
        guard let ssl = SSL_new(context) else { throw Self.sslError("TLS session for \(target)") }
        self.ssl = ssl
        SSL_set_fd(ssl, self.fd)
        let name = tls.serverName ?? configuration.host
        if Self.isIPAddress(name) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name)
        } else {
            _ = tw_ssl_set_sni(ssl, name)
            SSL_set1_host(ssl, name)
        }
        ERR_clear_error()
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                throw RedisError(.connection, "TLS handshake with \(target): certificate not trusted: \(String(cString: X509_verify_cert_error_string(verify)))")
            }
            throw Self.sslError("TLS handshake with \(target)")
        }
        guard let reader = redisReaderCreate() else { throw RedisError(.connection, "cannot allocate a reply reader") }
        self.reader = reader
    }

    func free() {
        if let ssl {
            SSL_shutdown(ssl)
            SSL_free(ssl)
        }
        if let context { SSL_CTX_free(context) }
        if let reader { redisReaderFree(reader) }
        if self.fd >= 0 { close(self.fd) }
        self.ssl = nil
        self.context = nil
        self.reader = nil
        self.fd = -1
    }

    func pipeline(_ commands: [[RedisArgument]]) throws(RedisError) -> [RedisValue] {
        guard let ssl, let reader else { throw RedisError(.connection, "connection is closed") }
        var out: [UInt8] = []
        for arguments in commands {
            guard !arguments.isEmpty else { throw RedisError(.configuration, "empty command") }
            var formatted: UnsafeMutablePointer<CChar>?
            let length = HiredisContext.withArgv(arguments) { argc, argv, lengths in
                redisFormatCommandArgv(&formatted, argc, UnsafeMutablePointer(mutating: argv), lengths)
            }
            guard length > 0, let formatted else { throw RedisError(.configuration, "cannot format command") }
            out.append(contentsOf: UnsafeRawBufferPointer(start: formatted, count: Int(length)))
            redisFreeCommand(formatted)
        }
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + sent, Int32($0.count - sent)) }
            guard n > 0 else { throw self.ioError(n, "write") }
            sent += Int(n)
        }
        var replies: [RedisValue] = []
        replies.reserveCapacity(commands.count)
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while replies.count < commands.count {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
                throw RedisError(.protocolError, "read reply: \(Self.readerError(reader))")
            }
            if let raw {
                defer { freeReplyObject(raw) }
                replies.append(try HiredisContext.convert(raw.assumingMemoryBound(to: redisReply.self)))
                continue
            }
            let n = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            guard n > 0 else { throw self.ioError(n, "read") }
            let fed = chunk.withUnsafeBytes { redisReaderFeed(reader, $0.baseAddress!.assumingMemoryBound(to: CChar.self), Int(n)) }
            guard fed == REDIS_OK else { throw RedisError(.protocolError, "read reply: \(Self.readerError(reader))") }
        }
        return replies
    }

    // MARK: - Helpers

    private func ioError(_ result: Int32, _ what: String) -> RedisError {
        let code = self.ssl.map { SSL_get_error($0, result) } ?? SSL_ERROR_SYSCALL
        if code == SSL_ERROR_ZERO_RETURN { return RedisError(.connection, "\(what): connection closed by the server") }
        if code == SSL_ERROR_SYSCALL || code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE {
            let e = errno
            return RedisError(.connection, "\(what): \(e == EAGAIN || e == EWOULDBLOCK ? "timed out" : String(cString: strerror(e)))")
        }
        return Self.sslError(what)
    }

    private static func sslError(_ what: String) -> RedisError {
        var detail = "unknown error"
        let code = ERR_get_error()
        if code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            detail = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        ERR_clear_error()
        return RedisError(.connection, "\(what): \(detail)")
    }

    private static func readerError(_ reader: UnsafeMutablePointer<redisReader>) -> String {
        withUnsafeBytes(of: reader.pointee.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    static func setTimeouts(_ fd: Int32, _ timeout: Duration) {
        var tv = timeval(timeout)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<Glibc.timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<Glibc.timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A blocking TCP connection to the first address of `host` that accepts, within `timeout` each.
    static func tcpConnect(host: String, port: Int, timeout: Duration) throws(RedisError) -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw RedisError(.connection, "resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = ECONNREFUSED
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = errno; continue }
            // SO_SNDTIMEO bounds connect() on Linux.
            setTimeouts(fd, timeout)
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        throw RedisError(.connection, "connect to \(host):\(port): \(String(cString: strerror(lastError)))")
    }
}
