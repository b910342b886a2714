import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-http-bearer';
import type { Principal } from './principal.js';
import type { TokenVerifier } from './token-verifier.js';

export const BEARER_STRATEGY = 'switchyard-bearer';

/** What the guard hands passport: only the Authorization header, and who verifies. */
export interface BearerCredentials {
  headers: { authorization?: string };
  verifier: TokenVerifier;
}

/**
 * passport-http-bearer extracts the token. Passport's strategy registry is process-global, so
 * with several app instances in one process the last registered strategy would serve them all;
 * the strategy therefore holds no state and verifies through the TokenVerifier (and its cache)
 * of the instance that received the request, which the guard passes along.
 */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, BEARER_STRATEGY) {
  constructor() {
    super({ passReqToCallback: true });
  }

  async validate(credentials: BearerCredentials, token: string): Promise<Principal | false> {
    return (await credentials.verifier.verify(token)) ?? false;
  }
}
