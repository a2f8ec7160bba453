-- Benchmark plumbing, not part of the seed's design.
-- pgbench ends a client at the first error, so the refusal a caller would catch
-- is caught here: bench_reserve returns null and records the refusal (its time,
-- for "refused while units remained": a refusal before a later reservation of
-- the same deal started). The exception block is a subtransaction on every
-- call, a cost the seed's callers would not pay in the database.
create table bench_refusals (
  id bigserial primary key,
  deal_id uuid not null,
  requested numeric(28,8) not null,
  at timestamptz not null default clock_timestamp()
);

-- Numbered ids for pgbench's integers: kind 1 deals, 2 investors, 3 lots, 4 vehicles.
create or replace function bench_uuid(p_kind int, p_n int) returns uuid
immutable language sql as $$
  select (lpad(p_kind::text, 8, '0') || '-0000-4000-8000-' || lpad(p_n::text, 12, '0'))::uuid
$$;

create or replace function bench_reserve(p_deal int, p_investor int, p_units numeric, p_price numeric, p_skip_locked int)
returns uuid language plpgsql as $$
begin
  if p_skip_locked = 1 then
    return fn_reserve_inventory(bench_uuid(1, p_deal), bench_uuid(2, p_investor), p_units, p_price, 1440);
  end if;
  return fn_reserve_inventory_for_update(bench_uuid(1, p_deal), bench_uuid(2, p_investor), p_units, p_price, 1440);
exception when raise_exception then
  if sqlerrm not like 'INSUFFICIENT%' then raise; end if;
  insert into bench_refusals (deal_id, requested) values (bench_uuid(1, p_deal), p_units);
  return null;
end $$;

-- A deal with `lots` lots of `units` units each, acquired on consecutive days.
create or replace function bench_deal(p_deal int, p_lots int, p_units numeric) returns void
language plpgsql as $$
begin
  insert into deals (id, vehicle_id, name, offer_unit_price) values (bench_uuid(1, p_deal), bench_uuid(4, 1), 'deal ' || p_deal, 28.5);
  insert into share_lots (id, deal_id, units_total, unit_cost, acquired_at, units_remaining)
    select bench_uuid(3, p_deal * 100 + l), bench_uuid(1, p_deal), p_units, 20, date '2024-01-01' + l, p_units
      from generate_series(1, p_lots) l;
end $$;
