// libFuzzer target `command`: the command layer before the engine. Bytes are
// parsed as requests (RESPParser, both framings), then each command goes
// through what EngineRequestHandler.handle does before it reaches a deal: the
// argument text check (skipped for the binary-safe PING/ECHO), the command
// table and its command's parser (arity, numbers, ids, options). Checks:
// - nothing traps, hangs or allocates beyond -malloc_limit_mb;
// - an argument the text check lets through is valid UTF-8 without control
//   characters (checked here independently of ArgumentText);
// - parsing is a pure function of the arguments: parsing the same command
//   again gives the same outcome (both succeed, or both fail with the same
//   code and message), and a refusal changes nothing it could change later;
// - every refusal has a code of capital letters and a message that encodes as
//   exactly one RESP error line (no CR or LF can split the reply and shift the
//   replies after it) of bounded size (an argument is never echoed whole).
import AllocationEngine
@testable import EngineServer

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCommands(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var parser = RESPParser()
    var start = 0
    while start < bytes.count {
        var commands: [RESPCommand] = []
        let r = parser.parse(bytes, from: start, maxCommands: 64, into: &commands)
        for command in commands { check(command) }
        if r.error != nil { break }
        if r.consumed == start && r.refusedLine == nil { break }
        start = r.consumed
    }
    return 0
}

/// Longest error message a refusal may carry: the longest usage line plus
/// the quoted prefixes of a few arguments, never a whole argument.
let maxMessageBytes = 2048

func check(_ command: RESPCommand) {
    let name = command.name
    if !ArgumentText.isBinarySafe(name) {
        if let refusal = ArgumentText.check(command) {
            checkRefusal(refusal, name)
            return
        }
        for i in 1..<max(1, command.count) {
            let arg = command.bytes(at: i)
            precondition(!arg.contains(where: { $0 < 0x20 || $0 == 0x7F }), "argument \(i) of \(name) passed the text check with a control character")
            precondition(String(validating: arg, as: UTF8.self) != nil, "argument \(i) of \(name) passed the text check as invalid UTF-8")
        }
    }
    guard let spec = CommandTable.byName[name] else { return }
    let first = outcome(spec, command)
    let second = outcome(spec, command)
    precondition(first == second, "parsing \(name) twice gave \(first) and then \(second)")
    if case .refused(let code, let message) = first { checkRefusal(CommandError(code, message), name) }
}

enum ParseOutcome: Equatable {
    case parsed(deal: Bool)
    case refused(String, String)
}

func outcome(_ spec: CommandSpec, _ command: RESPCommand) -> ParseOutcome {
    var arguments = Arguments(command, name: command.name, usage: spec.usage)
    do throws(CommandError) {
        switch try spec.parse(&arguments) {
        case .deal: return .parsed(deal: true)
        case .engine: return .parsed(deal: false)
        case .control: return .parsed(deal: false)
        }
    } catch {
        return .refused(error.code, error.message)
    }
}

func checkRefusal(_ error: CommandError, _ name: String) {
    precondition(!error.code.isEmpty && error.code.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }), "\(name): error code '\(error.code)' is not capital letters")
    precondition(!error.message.isEmpty, "\(name): an error without a message")
    precondition(error.message.utf8.count <= maxMessageBytes, "\(name): a \(error.message.utf8.count)-byte error message")
    var e = RESPEncoder(protocolVersion: 2)
    e.error(code: error.code, message: error.message)
    let reply = e.bytes
    let breaks = reply.indices.filter { reply[$0] == 13 || reply[$0] == 10 }
    precondition(reply.first == 45 && breaks == [reply.count - 2, reply.count - 1], "\(name): the error reply is not one RESP line: \(error.message)")
}
