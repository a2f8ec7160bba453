-- The seed's server functions (../shared/seeds/001_9eb25b1829333a50.txt:
-- "fn_reserve_inventory() with FOR UPDATE SKIP LOCKED concurrency protection",
-- "fn_finalize_allocation", positions updated from approved allocations),
-- written against the seed's tables (schema.sql). The seed names them and
-- their arguments; the bodies here are the plain reading of that design.

-- Reserve units for an investor, taking them from the deal's lots oldest first.
-- SKIP LOCKED: a lot another transaction has locked is passed over, so a caller
-- that finds the lots it needs locked is refused although units remain (the
-- false refusals the comparison counts). The FOR loop fetches (and so locks)
-- up to 10 lots at a time: every call locks all of a deal's first 10 lots.
create or replace function fn_reserve_inventory(
  p_deal_id uuid, p_investor_id uuid, p_units numeric, p_price numeric, p_hold_minutes int default 30)
returns uuid language plpgsql as $$
declare
  v_reservation uuid;
  v_need numeric(28,8) := p_units;
  v_take numeric(28,8);
  v_lot record;
begin
  if p_units is null or p_units <= 0 then
    raise exception 'INVALID units must be greater than zero' using errcode = '22023';
  end if;
  insert into reservations (deal_id, investor_id, requested_units, proposed_unit_price, expires_at)
  values (p_deal_id, p_investor_id, p_units, p_price, now() + make_interval(mins => p_hold_minutes))
  returning id into v_reservation;
  for v_lot in
    select id, units_remaining from share_lots
     where deal_id = p_deal_id and status = 'available' and units_remaining > 0
     order by acquired_at, created_at, id
     for update skip locked
  loop
    v_take := least(v_lot.units_remaining, v_need);
    update share_lots
       set units_remaining = units_remaining - v_take,
           status = case when units_remaining - v_take = 0 then 'held' else 'available' end
     where id = v_lot.id;
    insert into reservation_lot_items (reservation_id, lot_id, units) values (v_reservation, v_lot.id, v_take);
    v_need := v_need - v_take;
    exit when v_need = 0;
  end loop;
  if v_need > 0 then
    raise exception 'INSUFFICIENT requested %, available %', p_units, p_units - v_need;
  end if;
  return v_reservation;
end $$;

-- The same with plain FOR UPDATE: a caller waits for the lots it needs instead
-- of passing over them, so it is refused only when the units are really gone
-- (callers of one deal are served one at a time).
create or replace function fn_reserve_inventory_for_update(
  p_deal_id uuid, p_investor_id uuid, p_units numeric, p_price numeric, p_hold_minutes int default 30)
returns uuid language plpgsql as $$
declare
  v_reservation uuid;
  v_need numeric(28,8) := p_units;
  v_take numeric(28,8);
  v_lot record;
begin
  if p_units is null or p_units <= 0 then
    raise exception 'INVALID units must be greater than zero' using errcode = '22023';
  end if;
  insert into reservations (deal_id, investor_id, requested_units, proposed_unit_price, expires_at)
  values (p_deal_id, p_investor_id, p_units, p_price, now() + make_interval(mins => p_hold_minutes))
  returning id into v_reservation;
  for v_lot in
    select id, units_remaining from share_lots
     where deal_id = p_deal_id and status = 'available' and units_remaining > 0
     order by acquired_at, created_at, id
     for update
  loop
    v_take := least(v_lot.units_remaining, v_need);
    update share_lots
       set units_remaining = units_remaining - v_take,
           status = case when units_remaining - v_take = 0 then 'held' else 'available' end
     where id = v_lot.id;
    insert into reservation_lot_items (reservation_id, lot_id, units) values (v_reservation, v_lot.id, v_take);
    v_need := v_need - v_take;
    exit when v_need = 0;
  end loop;
  if v_need > 0 then
    raise exception 'INSUFFICIENT requested %, available %', p_units, p_units - v_need;
  end if;
  return v_reservation;
end $$;

-- A pending, unexpired reservation becomes an allocation in pending_review with
-- the same lot items.
create or replace function fn_finalize_allocation(p_reservation_id uuid)
returns uuid language plpgsql as $$
declare
  v_res reservations%rowtype;
  v_allocation uuid;
begin
  select * into v_res from reservations where id = p_reservation_id for update;
  if not found then raise exception 'NOTFOUND reservation %', p_reservation_id; end if;
  if v_res.status <> 'pending' then raise exception 'CONFLICT reservation % is %', p_reservation_id, v_res.status; end if;
  if v_res.expires_at <= now() then raise exception 'EXPIRED reservation %', p_reservation_id; end if;
  insert into allocations (deal_id, investor_id, unit_price, units)
  values (v_res.deal_id, v_res.investor_id, v_res.proposed_unit_price, v_res.requested_units)
  returning id into v_allocation;
  insert into allocation_lot_items (allocation_id, lot_id, units)
    select v_allocation, lot_id, units from reservation_lot_items where reservation_id = p_reservation_id;
  update reservations set status = 'approved' where id = p_reservation_id;
  return v_allocation;
end $$;

-- pending_review -> approved; the units and their cost go to the investor's
-- position in the deal's vehicle.
create or replace function fn_approve_allocation(p_allocation_id uuid)
returns void language plpgsql as $$
declare
  v_alloc allocations%rowtype;
  v_vehicle uuid;
begin
  select * into v_alloc from allocations where id = p_allocation_id for update;
  if not found then raise exception 'NOTFOUND allocation %', p_allocation_id; end if;
  if v_alloc.status = 'approved' then return; end if;
  if v_alloc.status <> 'pending_review' then raise exception 'CONFLICT allocation % is %', p_allocation_id, v_alloc.status; end if;
  update allocations set status = 'approved', approved_at = now() where id = p_allocation_id;
  select vehicle_id into v_vehicle from deals where id = v_alloc.deal_id;
  insert into positions (investor_id, vehicle_id, units, cost_basis, as_of_date)
  values (v_alloc.investor_id, v_vehicle, v_alloc.units, round(v_alloc.units * v_alloc.unit_price, 2), current_date)
  on conflict (investor_id, vehicle_id) do update
    set units = positions.units + excluded.units,
        cost_basis = positions.cost_basis + excluded.cost_basis,
        as_of_date = excluded.as_of_date;
end $$;
