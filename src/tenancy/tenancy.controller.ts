import { Body, Controller, Get, HttpCode, Param, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AdminOnly } from '../auth/auth.decorators.js';
import { ApiErrors, ApiPage } from '../common/openapi.js';
import { ListQueryDto } from '../common/pagination.js';
import { UuidParam } from '../common/uuid-param.pipe.js';
import {
  ApplicationResponse,
  CreateApplicationDto,
  CreatedApplicationResponse,
  CreateProjectDto,
  CreateTenantDto,
  ProjectResponse,
  SigningSecretResponse,
  TenantResponse,
} from './tenancy.dto.js';
import { TenancyService } from './tenancy.service.js';

@ApiTags('admin')
@ApiBearerAuth()
@ApiErrors('UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND')
@AdminOnly()
@Controller('api')
export class TenancyController {
  constructor(private readonly tenancy: TenancyService) {}

  @Post('tenants')
  @ApiOperation({ summary: 'Create a tenant' })
  @ApiCreatedResponse({ type: TenantResponse })
  @ApiErrors('VALIDATION_FAILED', 'CONFLICT')
  createTenant(@Body() body: CreateTenantDto): Promise<TenantResponse> {
    return this.tenancy.createTenant(body);
  }

  @Get('tenants')
  @ApiOperation({ summary: 'List tenants' })
  @ApiPage(TenantResponse)
  listTenants(@Query() query: ListQueryDto) {
    return this.tenancy.listTenants(query);
  }

  @Get('tenants/:tenantId')
  @ApiOperation({ summary: 'Get a tenant' })
  @ApiOkResponse({ type: TenantResponse })
  getTenant(@Param('tenantId', UuidParam) tenantId: string): Promise<TenantResponse> {
    return this.tenancy.getTenant(tenantId);
  }

  @Post('tenants/:tenantId/projects')
  @ApiOperation({ summary: 'Create a project in a tenant' })
  @ApiCreatedResponse({ type: ProjectResponse })
  @ApiErrors('VALIDATION_FAILED', 'CONFLICT')
  createProject(@Param('tenantId', UuidParam) tenantId: string, @Body() body: CreateProjectDto) {
    return this.tenancy.createProject(tenantId, body);
  }

  @Get('tenants/:tenantId/projects')
  @ApiOperation({ summary: "List a tenant's projects" })
  @ApiPage(ProjectResponse)
  listProjects(@Param('tenantId', UuidParam) tenantId: string, @Query() query: ListQueryDto) {
    return this.tenancy.listProjects(tenantId, query);
  }

  @Get('projects/:projectId')
  @ApiOperation({ summary: 'Get a project' })
  @ApiOkResponse({ type: ProjectResponse })
  getProject(@Param('projectId', UuidParam) projectId: string) {
    return this.tenancy.getProject(projectId);
  }

  @Post('projects/:projectId/applications')
  @ApiOperation({ summary: 'Create an application; its signing secret is shown once' })
  @ApiCreatedResponse({ type: CreatedApplicationResponse })
  @ApiErrors('VALIDATION_FAILED', 'CONFLICT')
  createApplication(@Param('projectId', UuidParam) projectId: string, @Body() body: CreateApplicationDto) {
    return this.tenancy.createApplication(projectId, body);
  }

  @Get('projects/:projectId/applications')
  @ApiOperation({ summary: "List a project's applications" })
  @ApiPage(ApplicationResponse)
  listApplications(@Param('projectId', UuidParam) projectId: string, @Query() query: ListQueryDto) {
    return this.tenancy.listApplications(projectId, query);
  }

  @Get('applications/:applicationId')
  @ApiOperation({ summary: 'Get an application' })
  @ApiOkResponse({ type: ApplicationResponse })
  getApplication(@Param('applicationId', UuidParam) applicationId: string) {
    return this.tenancy.getApplication(applicationId);
  }

  @Post('applications/:applicationId/rotate-secret')
  @HttpCode(200)
  @ApiOperation({
    summary:
      "Rotate the application's signing secret (signs webhook steps that name a url); the old one signs 24 h more",
  })
  @ApiOkResponse({ type: SigningSecretResponse })
  rotateSecret(@Param('applicationId', UuidParam) applicationId: string) {
    return this.tenancy.rotateApplicationSecret(applicationId);
  }
}
