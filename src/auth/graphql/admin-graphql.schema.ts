import { buildSchema } from 'graphql';

/** The `hashedKey` value that asks the server to generate the token (the seed's convention). */
export const GENERATE_TOKEN = '__GENERATE_TOKEN__';

/**
 * The admin GraphQL surface: one mutation kept for clients written against the seed's
 * `createMachineUserWithCredentials`, plus the one query GraphQL demands. Everything else
 * lives in the REST admin API.
 */
export const ADMIN_SDL = /* GraphQL */ `
  type MachineUser {
    id: ID!
    tenantId: ID!
    name: String!
    username: String!
    enabled: Boolean!
    roles: [String!]!
    "ISO 8601 UTC"
    createdAt: String!
  }

  input MachineUserCredentialsInput {
    name: String!
    username: String!
    "Only \\"${GENERATE_TOKEN}\\" is accepted: the server generates every token."
    hashedKey: String!
    enabled: Boolean
  }

  type MachineUserWithCredentials {
    "Shown once."
    generatedToken: String
    "Id of the generated token, to revoke it later."
    tokenId: ID!
    machineUser: MachineUser!
  }

  type Query {
    machineUser(id: ID!): MachineUser
  }

  type Mutation {
    createMachineUserWithCredentials(tenantId: ID!, input: MachineUserCredentialsInput!): MachineUserWithCredentials!
  }
`;

export const adminSchema = buildSchema(ADMIN_SDL);
