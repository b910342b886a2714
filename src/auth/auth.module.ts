import { Global, Module } from '@nestjs/common';
import { PassportModule } from '@nestjs/passport';
import { TenancyModule } from '../tenancy/tenancy.module.js';
import { BearerStrategy } from './bearer.strategy.js';
import { AdminGraphqlController } from './graphql/admin-graphql.controller.js';
import { AdminGraphqlService } from './graphql/admin-graphql.service.js';
import { MachineUsersController } from './machine-users.controller.js';
import { MachineUsersService } from './machine-users.service.js';
import { TokenVerifier } from './token-verifier.js';

@Global()
@Module({
  imports: [PassportModule, TenancyModule],
  controllers: [MachineUsersController, AdminGraphqlController],
  providers: [TokenVerifier, BearerStrategy, MachineUsersService, AdminGraphqlService],
  exports: [TokenVerifier, MachineUsersService],
})
export class AuthModule {}
