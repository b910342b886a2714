import { Global, Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import { BearerStrategy } from './bearer.strategy.js';
import { TokenVerifier } from './token-verifier.js';

@Global()
@Module({
  imports: [PassportModule],
  providers: [TokenVerifier, BearerStrategy],
  exports: [TokenVerifier],
})
export class AuthModule {}
