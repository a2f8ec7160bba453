-- The inventory part of the seed schema (../shared/seeds/000_048efe68dc27a265.txt,
-- "PostgreSQL DDL"), copied verbatim: share_sources, share_lots, reservations,
-- reservation_lot_items, allocations, allocation_lot_items and positions, with
-- the tables they reference (profiles, investors, vehicles, deals, documents).
-- Two changes, both to run outside Supabase: profiles.id does not reference
-- auth.users, and email is text instead of citext (no extension needed).
create extension if not exists pgcrypto;

create type user_role as enum ('investor','staff_admin','staff_ops','staff_rm');

create type vehicle_type as enum ('fund','spv','securitization','note','other');

create type deal_type_enum as enum ('equity_secondary','equity_primary','credit_trade_finance','other');
create type deal_status_enum as enum ('draft','open','allocation_pending','closed','cancelled');


create type reservation_status_enum as enum ('pending','approved','expired','cancelled');
create type allocation_status_enum  as enum ('pending_review','approved','rejected','settled');

create table profiles (
  id uuid primary key,
  role user_role not null default 'investor',
  display_name text,
  email text unique,
  title text,                                     -- staff fine-grained gating
  created_at timestamptz default now()
);

create table investors (
  id uuid primary key default gen_random_uuid(),
  legal_name text not null,
  type text,                                      -- individual/entity
  kyc_status text default 'pending',
  country text,
  created_at timestamptz default now()
);

create table vehicles (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  type vehicle_type,
  domicile text,
  currency text default 'USD',
  created_at timestamptz default now()
);

-- Define deals now (referenced by docs later)
create table deals (
  id uuid primary key default gen_random_uuid(),
  vehicle_id uuid references vehicles(id),
  name text not null,
  deal_type deal_type_enum default 'equity_secondary',
  status deal_status_enum default 'open',
  currency text default 'USD',
  open_at timestamptz,
  close_at timestamptz,
  terms_schema jsonb,                              -- typed params by deal_type
  offer_unit_price numeric(18,6),
  created_by uuid references profiles(id),
  created_at timestamptz default now()
);

-- Documents (before subscriptions; may reference deal/vehicle/owners)
create table documents (
  id uuid primary key default gen_random_uuid(),
  owner_investor_id uuid references investors(id),
  owner_user_id uuid references profiles(id),
  vehicle_id uuid references vehicles(id),
  deal_id uuid references deals(id),               -- deal-scoped docs (invites, TS, subs)
  type text,                                       -- NDA/Subscription/Report/Statement/KYC/Invoice/etc.
  file_key text not null,                          -- storage key
  watermark jsonb,
  created_by uuid references profiles(id),
  created_at timestamptz default now()
);

create table positions (
  id uuid primary key default gen_random_uuid(),
  investor_id uuid references investors(id) on delete cascade,
  vehicle_id uuid references vehicles(id) on delete cascade,
  units numeric(28,8) default 0,
  cost_basis numeric(18,2) default 0,
  last_nav numeric(18,6),
  as_of_date date,
  unique (investor_id, vehicle_id)
);


create table share_sources (
  id uuid primary key default gen_random_uuid(),
  kind text check (kind in ('company','fund','colleague','other')) not null,
  counterparty_name text,
  contract_doc_id uuid references documents(id),
  notes text
);

create table share_lots (
  id uuid primary key default gen_random_uuid(),
  deal_id uuid references deals(id) on delete cascade,
  source_id uuid references share_sources(id),
  units_total numeric(28,8) not null check (units_total >= 0),
  unit_cost numeric(18,6) not null,
  currency text default 'USD',
  acquired_at date,
  lockup_until date,
  units_remaining numeric(28,8) not null check (units_remaining >= 0),
  status text check (status in ('available','held','exhausted')) default 'available',
  created_at timestamptz default now()
);
create index on share_lots (deal_id, status);

create table reservations (
  id uuid primary key default gen_random_uuid(),
  deal_id uuid references deals(id) on delete cascade,
  investor_id uuid references investors(id),
  requested_units numeric(28,8) not null check (requested_units > 0),
  proposed_unit_price numeric(18,6) not null,
  expires_at timestamptz not null,
  status reservation_status_enum default 'pending',
  created_by uuid references profiles(id),
  created_at timestamptz default now()
);
create index on reservations (deal_id, status, expires_at);

create table reservation_lot_items (
  reservation_id uuid references reservations(id) on delete cascade,
  lot_id uuid references share_lots(id),
  units numeric(28,8) not null check (units > 0),
  primary key (reservation_id, lot_id)
);

create table allocations (
  id uuid primary key default gen_random_uuid(),
  deal_id uuid references deals(id) on delete cascade,
  investor_id uuid references investors(id),
  unit_price numeric(18,6) not null,
  units numeric(28,8) not null check (units > 0),
  status allocation_status_enum default 'pending_review',
  approved_by uuid references profiles(id),
  approved_at timestamptz,
  created_at timestamptz default now()
);
create index on allocations (deal_id, investor_id, status);

create table allocation_lot_items (
  allocation_id uuid references allocations(id) on delete cascade,
  lot_id uuid references share_lots(id),
  units numeric(28,8) not null check (units > 0),
  primary key (allocation_id, lot_id)
);
