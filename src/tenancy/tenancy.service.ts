import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { DomainException } from '../common/errors.js';
import { sharedReads } from '../common/group-commit.js';
import { type ListQueryDto, type Page, paginate } from '../common/pagination.js';
import { SigningSecretsService } from '../secrets/signing-secrets.service.js';
import type {
  ApplicationResponse,
  CreateApplicationDto,
  CreatedApplicationResponse,
  CreateProjectDto,
  CreateTenantDto,
  ProjectResponse,
  TenantResponse,
} from './tenancy.dto.js';
import { Application, Project, Tenant } from './tenancy.entities.js';

/** Names and slugs of an application's place in the tenancy tree, as payloads quote them. */
export interface ApplicationContext {
  tenant: { id: string; name: string; slug: string };
  project: { id: string; name: string; slug: string };
  application: { id: string; name: string; slug: string };
}

/** Tenants, projects and applications: the tree every other object hangs from. */
@Injectable()
export class TenancyService {
  private readonly contextReads = sharedReads(
    ({ tenantId, applicationId }: { tenantId: string; applicationId: string }) =>
      this.readApplicationContext(tenantId, applicationId),
  );

  constructor(
    private readonly em: EntityManager,
    private readonly secrets: SigningSecretsService,
  ) {}

  async createTenant(input: CreateTenantDto): Promise<TenantResponse> {
    const tenant = this.em.create(Tenant, { id: randomUUID(), ...input });
    await this.em.persist(tenant).flush();
    return presentTenant(tenant);
  }

  listTenants(query: ListQueryDto): Promise<Page<TenantResponse>> {
    return paginate(this.em, Tenant, {}, query, presentTenant);
  }

  async getTenant(id: string): Promise<TenantResponse> {
    return presentTenant(await this.findTenant(id));
  }

  async createProject(tenantId: string, input: CreateProjectDto): Promise<ProjectResponse> {
    await this.findTenant(tenantId);
    const project = this.em.create(Project, { id: randomUUID(), tenantId, ...input });
    await this.em.persist(project).flush();
    return presentProject(project);
  }

  async listProjects(tenantId: string, query: ListQueryDto): Promise<Page<ProjectResponse>> {
    await this.findTenant(tenantId);
    return paginate(this.em, Project, { tenantId }, query, presentProject);
  }

  async getProject(id: string): Promise<ProjectResponse> {
    return presentProject(await this.findProject(id));
  }

  async createApplication(projectId: string, input: CreateApplicationDto): Promise<CreatedApplicationResponse> {
    const project = await this.findProject(projectId);
    return this.em.transactional(async (em) => {
      const application = em.create(Application, { id: randomUUID(), tenantId: project.tenantId, projectId, ...input });
      em.persist(application);
      const signingSecret = this.secrets.issue(em, {
        tenantId: project.tenantId,
        ownerType: 'application',
        ownerId: application.id,
      });
      await em.flush();
      return { ...presentApplication(application), signingSecret };
    });
  }

  async listApplications(projectId: string, query: ListQueryDto): Promise<Page<ApplicationResponse>> {
    await this.findProject(projectId);
    return paginate(this.em, Application, { projectId }, query, presentApplication);
  }

  async getApplication(id: string): Promise<ApplicationResponse> {
    return presentApplication(await this.findApplication(id));
  }

  async rotateApplicationSecret(id: string): Promise<{ signingSecret: string }> {
    const application = await this.findApplication(id);
    return this.em.transactional(async (em) => {
      const signingSecret = await this.secrets.rotate(em, {
        tenantId: application.tenantId,
        ownerType: 'application',
        ownerId: application.id,
      });
      await em.flush();
      return { signingSecret };
    });
  }

  /**
   * For other modules: the application with its project and tenant, if it is in `tenantId`. One
   * query (a join of plain rows, no entities), asked on every flow start and cron firing;
   * concurrent asks for one application share it (sharedReads).
   */
  applicationContext(tenantId: string, applicationId: string): Promise<ApplicationContext | null> {
    return this.contextReads.submit(`${tenantId}:${applicationId}`, { tenantId, applicationId });
  }

  private async readApplicationContext(tenantId: string, applicationId: string): Promise<ApplicationContext | null> {
    const [row] = await this.em.fork().execute<Record<string, string>[]>(
      `select t.id as tenant_id, t.name as tenant_name, t.slug as tenant_slug,
              p.id as project_id, p.name as project_name, p.slug as project_slug,
              a.id as application_id, a.name as application_name, a.slug as application_slug
         from applications a
         join projects p on p.id = a.project_id
         join tenants t on t.id = a.tenant_id
        where a.id = ? and a.tenant_id = ?`,
      [applicationId, tenantId],
    );
    if (!row) return null;
    const pick = (of: string) => ({ id: row[`${of}_id`], name: row[`${of}_name`], slug: row[`${of}_slug`] });
    return { tenant: pick('tenant'), project: pick('project'), application: pick('application') };
  }

  private async findTenant(id: string): Promise<Tenant> {
    return (await this.em.findOne(Tenant, { id })) ?? notFound('Tenant');
  }

  private async findProject(id: string): Promise<Project> {
    return (await this.em.findOne(Project, { id })) ?? notFound('Project');
  }

  private async findApplication(id: string): Promise<Application> {
    return (await this.em.findOne(Application, { id })) ?? notFound('Application');
  }
}

function notFound(what: string): never {
  throw DomainException.notFound(what);
}

function presentTenant(tenant: Tenant): TenantResponse {
  return { id: tenant.id, name: tenant.name, slug: tenant.slug, createdAt: tenant.createdAt.toISOString() };
}

function presentProject(project: Project): ProjectResponse {
  return {
    id: project.id,
    tenantId: project.tenantId,
    name: project.name,
    slug: project.slug,
    createdAt: project.createdAt.toISOString(),
  };
}

function presentApplication(application: Application): ApplicationResponse {
  return {
    id: application.id,
    projectId: application.projectId,
    tenantId: application.tenantId,
    name: application.name,
    slug: application.slug,
    createdAt: application.createdAt.toISOString(),
  };
}
