#!/usr/bin/env bash
# Side by side with PostgreSQL doing the seed's job: fn_reserve_inventory
# (lock the deal's lots oldest first, take units across them, insert the
# reservation and its lot items) called by pgbench from 50 clients, with
# synchronous_commit=on (fsync before the reply), against the engine's HOLD
# under NetBench-equivalent load (redis-benchmark, 50 clients).
# Needs PostgreSQL 15 server binaries (apt-get install postgresql) and a release
# build. Runs the server as the 'postgres' user in a temp dir on port 7393.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
WORK=$(mktemp -d)
chown postgres "$WORK"
PG() { su postgres -s /bin/bash -c "$*"; }
cleanup() { PG "$PGBIN/pg_ctl -D $WORK/pg -m immediate stop" >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PG "$PGBIN/initdb -D $WORK/pg -A trust -U postgres" >/dev/null
PG "$PGBIN/pg_ctl -D $WORK/pg -o '-p 7393 -k $WORK -c synchronous_commit=on -c fsync=on -c max_connections=200 -c shared_buffers=256MB' -l $WORK/pg.log start" >/dev/null
sleep 2
psql() { PG "$PGBIN/psql -h $WORK -p 7393 -U postgres -q -v ON_ERROR_STOP=1 $*"; }
cat > "$WORK/schema.sql" <<'SQL'
create table share_lots (id bigserial primary key, deal_id int not null, units_total numeric(28,8) not null,
  unit_cost numeric(18,6) not null, acquired_at date, units_remaining numeric(28,8) not null check (units_remaining >= 0));
create index on share_lots (deal_id);
create table reservations (id bigserial primary key, deal_id int not null, investor_id text not null,
  requested_units numeric(28,8) not null check (requested_units > 0), proposed_unit_price numeric(18,6) not null,
  expires_at timestamptz not null, status text not null default 'pending', created_at timestamptz default now());
create table reservation_lot_items (reservation_id bigint references reservations(id) on delete cascade,
  lot_id bigint references share_lots(id), units numeric(28,8) not null check (units > 0), primary key (reservation_id, lot_id));
create or replace function fn_reserve_inventory(p_deal int, p_investor text, p_units numeric, p_price numeric, p_minutes int default 30)
returns bigint language plpgsql as $$
declare r_id bigint; need numeric := p_units; lot record; take numeric; avail numeric;
begin
  select coalesce(sum(units_remaining), 0) into avail from share_lots where deal_id = p_deal;
  -- Lock the deal's lots oldest first (FOR UPDATE; SKIP LOCKED would report false sold-outs).
  perform 1 from share_lots where deal_id = p_deal order by acquired_at, id for update;
  select coalesce(sum(units_remaining), 0) into avail from share_lots where deal_id = p_deal;
  if avail < p_units then raise exception 'INSUFFICIENT requested %, available %', p_units, avail; end if;
  insert into reservations (deal_id, investor_id, requested_units, proposed_unit_price, expires_at)
    values (p_deal, p_investor, p_units, p_price, now() + make_interval(mins => p_minutes)) returning id into r_id;
  for lot in select id, units_remaining from share_lots where deal_id = p_deal and units_remaining > 0 order by acquired_at, id loop
    exit when need <= 0;
    take := least(lot.units_remaining, need);
    update share_lots set units_remaining = units_remaining - take where id = lot.id;
    insert into reservation_lot_items values (r_id, lot.id, take);
    need := need - take;
  end loop;
  return r_id;
end $$;
insert into share_lots (deal_id, units_total, unit_cost, acquired_at, units_remaining)
  select d, 1000000000, 20, '2024-01-01', 1000000000 from generate_series(1, 1000) d;
SQL
psql -f "$WORK/schema.sql"
echo "SELECT fn_reserve_inventory(1, 'inv-1', 1, 25);" > "$WORK/hot.sql"
echo "\\set d random(1, 1000)
SELECT fn_reserve_inventory(:d, 'inv-1', 1, 25);" > "$WORK/many.sql"
chown postgres "$WORK"/*.sql
for f in hot many; do
  tps=$(PG "$PGBIN/pgbench -h $WORK -p 7393 -U postgres -n -c 50 -j 2 -T $SECONDS_PER_RUN -f $WORK/$f.sql postgres" | grep -E "^tps" | head -1)
  printf '%-40s %s\n' "postgres fn_reserve_inventory ($f)" "$tps"
done
psql -c "\"select count(*) as reservations, sum(requested_units) as units from reservations\""
