import Foundation

// allocation-engine: the server and its data-directory tools.
let arguments = Array(CommandLine.arguments.dropFirst())
let topHelp = """
allocation-engine: a durable, Redis-protocol allocation engine for private-market deals.

Usage: allocation-engine <command> [options]

Commands:
  serve     start the server (default: 127.0.0.1:7379, data in ./data, strict durability)
  verify    check every snapshot and log segment of a data directory
  dump      print log records in readable form (filters: LSN, time, deal, type)
  replay    rebuild state up to an LSN or time into a new data directory
  digest    print the state digest and per-deal inventory of a data directory

Run 'allocation-engine <command> --help' for its options.
"""

func runMain() async -> Int32 {
    guard let command = arguments.first else {
        print(topHelp)
        return 0
    }
    let rest = Array(arguments.dropFirst())
    do {
        switch command {
        case "serve": return try await ServeCommand.run(rest)
        case "verify": return try VerifyCommand.run(rest)
        case "dump": return try DumpCommand.run(rest)
        case "replay": return try ReplayCommand.run(rest, writeOut: true)
        case "digest": return try ReplayCommand.run(rest, writeOut: false)
        case "help", "--help", "-h":
            print(topHelp)
            return 0
        case "--version", "version":
            print("allocation-engine \(ServeCommand.version)")
            return 0
        default:
            printError("unknown command '\(command)'\n\n\(topHelp)")
            return 2
        }
    } catch let e as UsageError {
        printError("error: \(e)")
        return 2
    } catch {
        printError("error: \(error)")
        return 1
    }
}

exit(await runMain())
