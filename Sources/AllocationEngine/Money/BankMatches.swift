import WAL
import Synchronization

/// How much of each bank transaction is matched to invoices, summed over the
/// live reconciled payments of every deal. Derived, like the id maps: rebuilt
/// from the deals' payments on load and kept up to date as they change, so it
/// can never disagree with them. A reconciliation reserves its amount here
/// (check and add under one lock) before its deal logs it, so two deals
/// matching one transaction at once can never together exceed its amount.
///
/// Memory: one entry per transaction with something matched.
public final class BankMatches: Sendable {
    private let matched = Locked<[String: Int128]>([:])
    public init() {}

    /// The matched sum of `txn`.
    public func matched(_ txn: String) -> Money { Money(raw: matched.withLock { $0[txn] ?? 0 }) }

    /// Adds `amount` to `txn` if the sum stays within `limit`; false (and no change) otherwise.
    func reserve(_ txn: String, _ amount: Money, limit: Money) -> Bool {
        matched.withLock { m in
            let now = m[txn] ?? 0
            guard now + amount.raw <= limit.raw else { return false }
            m[txn] = now + amount.raw
            return true
        }
    }

    /// Adds (replay, load) or removes (a reversed match) an amount.
    func add(_ txn: String, _ amount: Money) {
        matched.withLock { m in
            let v = (m[txn] ?? 0) + amount.raw
            m[txn] = v == 0 ? nil : v
        }
    }
}
