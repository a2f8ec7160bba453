/// What every argument of a command must be before the command is parsed:
/// valid UTF-8 without control characters (C0, the tab included, and DEL).
///
/// Arguments reach the engine as Swift `String`s. Decoding repairs invalid
/// UTF-8 with U+FFFD, so `x\xFF` and `x\xFE` would become the same argument,
/// and a NUL or a newline would reach ids and text the client may not have
/// meant: the command that ran would not be the one sent. No argument of the
/// engine needs such bytes (ids are printable ASCII, text has no control
/// characters), so they are refused here, the same way over RESP and inline
/// (whose raw control bytes the parser already refuses; a quoted `"\x00"`
/// escape arrives here like a RESP bulk string). PING's and ECHO's message
/// stays binary-safe, as in Redis: it is only echoed back.
enum ArgumentText {
    /// The `INVALID` error for the first bad argument after the name, or nil.
    static func check(_ command: RESPCommand) -> CommandError? {
        guard command.count > 1 else { return nil }
        for index in 1..<command.count {
            let bytes = command.bytes(at: index)
            var ascii = true
            for b in bytes {
                if b < 0x20 || b == 0x7F {
                    return CommandError("INVALID", "argument \(index) holds the control character \(hex(b)); arguments must be text without control characters")
                }
                if b >= 0x80 { ascii = false }
            }
            if !ascii && String(validating: bytes, as: UTF8.self) == nil {
                return CommandError("INVALID", "argument \(index) is not valid UTF-8")
            }
        }
        return nil
    }

    /// Commands whose arguments are bytes, not text.
    static func isBinarySafe(_ name: String) -> Bool { name == "PING" || name == "ECHO" }

    private static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "\\x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }
}
