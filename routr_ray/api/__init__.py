"""The provisioning API (issue 20): Routr's connect gRPC services (Agents, Peers, Domains, Numbers, Trunks,
Credentials, ACL) over a store (PostgreSQL, the YAML directory read-only, or memory), with workspaces and API keys.
See docs/api.md."""
