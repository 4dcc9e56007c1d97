// A real OpenID provider for the tests (oidc-provider, OpenID Certified): client-credentials grants
// give RS256-signed JWT access tokens for one audience, with the client's entitlements in the claim
// the site is configured to read. Not a token minter of ours: discovery, JWKS and the token endpoint
// are oidc-provider's own.
//
//   node server.mjs PORT   (environment: OIDC_AUDIENCE, OIDC_CLIENTS, OIDC_KID, OIDC_TOKEN_TTL_S, OIDC_CLAIM)
//
// OIDC_CLIENTS: JSON [{"client_id", "client_secret", "entitlements": [...]}]. OIDC_KID names the signing
// key generated at start (a restart with another kid is a key rotation).
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.env.OIDC_AUDIENCE ?? 'eo-ingest';
// the resource indicator (RFC 8707) tokens are issued for; its audience claim is OIDC_AUDIENCE
const resource = 'urn:eo-ingest:stac-api';
const claim = process.env.OIDC_CLAIM ?? 'eduperson_entitlement';
const ttl = Number(process.env.OIDC_TOKEN_TTL_S ?? 600);
const clients = JSON.parse(process.env.OIDC_CLIENTS ?? '[]');
const byId = Object.fromEntries(clients.map((c) => [c.client_id, c]));

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: process.env.OIDC_KID ?? 'key-1', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  jwks: { keys: [jwk] },
  scopes: ['openid', 'stac'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'stac',
        audience,
        accessTokenTTL: ttl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (_ctx, token) => {
    const entitlements = byId[token.clientId]?.entitlements;
    return entitlements ? { [claim]: entitlements } : undefined;
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
