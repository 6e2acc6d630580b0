-- routr-ray provisioning API, schema 1: workspaces, API keys with a role per workspace, resources as Routr
-- documents (jsonb) with the refs they hold and the values that must be unique across all workspaces.

CREATE TABLE workspaces (
  name text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  key_id text PRIMARY KEY,
  secret_sha256 bytea NOT NULL,
  name text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz
);

CREATE TABLE key_roles (
  key_id text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
  workspace text NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('viewer', 'admin', 'owner')),
  PRIMARY KEY (key_id, workspace)
);

CREATE TABLE resources (
  ref text PRIMARY KEY,
  seq bigserial NOT NULL UNIQUE,
  workspace text NOT NULL REFERENCES workspaces (name) ON DELETE RESTRICT,
  kind text NOT NULL CHECK (kind IN ('Agent', 'Peer', 'Domain', 'Number', 'Trunk', 'Credentials',
                                     'AccessControlList')),
  document jsonb NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX resources_pages ON resources (workspace, kind, seq DESC);

-- a resource's refs: a target that is referred to cannot be deleted
CREATE TABLE resource_refs (
  ref text NOT NULL REFERENCES resources (ref) ON DELETE CASCADE,
  field text NOT NULL,
  target text NOT NULL REFERENCES resources (ref) ON DELETE RESTRICT,
  PRIMARY KEY (ref, field)
);
CREATE INDEX resource_refs_target ON resource_refs (target);

-- values unique across every workspace (domainUri, telUrl, usernames, trunk inbound URIs)
CREATE TABLE resource_uniques (
  label text NOT NULL,
  value text NOT NULL,
  ref text NOT NULL REFERENCES resources (ref) ON DELETE CASCADE,
  field text NOT NULL,
  PRIMARY KEY (label, value)
);
CREATE INDEX resource_uniques_ref ON resource_uniques (ref);
