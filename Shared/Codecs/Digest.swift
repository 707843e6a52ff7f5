import COpenSSL

/// SHA-256 and secure random bytes from OpenSSL's libcrypto (Debian's libssl-dev).
public enum Digest {
    public static func sha256(_ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        input.withUnsafeBytes { data in
            _ = EVP_Digest(data.baseAddress, data.count, &out, &length, EVP_sha256(), nil)
        }
        return out
    }

    public static func sha256(_ text: String) -> [UInt8] { self.sha256(Array(text.utf8)) }

    /// HMAC-SHA256 of `message` under `key` (RFC 2104).
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &out, &length)
            }
        }
        return out
    }

    /// Compares in time independent of where the inputs differ (for secrets).
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }

    /// Cryptographically secure random bytes.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else {
            // OpenSSL's generator failed (no entropy source): fall back to the system's, which is also secure.
            var rng = SystemRandomNumberGenerator()
            for i in 0..<count { out[i] = UInt8.random(in: 0...255, using: &rng) }
            return out
        }
        return out
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
