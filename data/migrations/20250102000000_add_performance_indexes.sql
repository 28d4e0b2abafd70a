-- The seed platform's 23 performance indexes (audit section 2.1), under the seed's exact names
-- and in the seed's order. Defined in the repository, never applied to the "before" database.
--
-- One CREATE INDEX CONCURRENTLY per statement: each must run on its own autocommit connection
-- (not inside a transaction block). A failed concurrent build leaves an INVALID index that
-- IF NOT EXISTS then accepts silently, so callers check pg_index.indisvalid afterwards.
-- The comment above each statement names the query the index serves.

-- reconciliation_jobs indexes

-- job count per project by status (project page, N+1 in search_projects): WHERE project_id = $1 AND status = $2
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_jobs_project_status ON reconciliation_jobs (project_id, status);

-- a project's latest jobs: WHERE project_id = $1 ORDER BY created_at DESC LIMIT 20
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_jobs_project_created ON reconciliation_jobs (project_id, created_at DESC);

-- job queue / failed-jobs dashboard: WHERE status = 'pending' ORDER BY created_at DESC LIMIT 50
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_jobs_status_created ON reconciliation_jobs (status, created_at DESC);

-- jobs a user started: WHERE created_by = $1
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_jobs_created_by ON reconciliation_jobs (created_by);

-- reconciliation_results indexes

-- a job's best results first: WHERE job_id = $1 ORDER BY confidence DESC LIMIT 100
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_results_job_confidence ON reconciliation_results (job_id, confidence DESC);

-- a job's results in one status (review queue): WHERE job_id = $1 AND status = 'review'
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_results_job_status ON reconciliation_results (job_id, status);

-- a job's latest results: WHERE job_id = $1 ORDER BY created_at DESC LIMIT 100
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_results_job_created ON reconciliation_results (job_id, created_at DESC);

-- data_sources indexes

-- data-source count per project (N+1 in search_projects): WHERE project_id = $1 AND is_active
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_data_sources_project_active ON data_sources (project_id, is_active);

-- a project's sources in one status: WHERE project_id = $1 AND status = 'error'
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_data_sources_project_status ON data_sources (project_id, status);

-- reconciliation_records indexes

-- a project's records in a date range: WHERE project_id = $1 AND transaction_date BETWEEN $2 AND $3
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_records_project_date ON reconciliation_records (project_id, transaction_date);

-- a project's unmatched records: WHERE project_id = $1 AND status = 'unmatched'
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_records_project_status ON reconciliation_records (project_id, status);

-- records from one source system (rare legacy_NNN systems are selective): WHERE source_system = $1
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_records_source_system ON reconciliation_records (source_system);

-- reconciliation_matches indexes

-- a project's matches: WHERE project_id = $1
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_matches_project ON reconciliation_matches (project_id);

-- low-confidence matches to review: WHERE confidence < 0.5 ORDER BY confidence LIMIT 100
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_reconciliation_matches_confidence ON reconciliation_matches (confidence);

-- users indexes

-- login and user lookup by email, case-insensitive: WHERE lower(email) = lower($1)
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email_lower ON users (lower(email));

-- list_users page of active users, newest first: WHERE is_active ORDER BY created_at DESC LIMIT 20
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_active ON users (created_at DESC) WHERE is_active;

-- projects indexes

-- project count per owner (N+1 in list_users): WHERE owner_id = $1 AND is_active
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_projects_owner_id_active ON projects (owner_id, is_active);

-- list_projects by status, newest first: WHERE status = $1 ORDER BY created_at DESC LIMIT 20
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_projects_status ON projects (status, created_at DESC);

-- uploaded_files indexes

-- a project's files in one status (processing queue): WHERE project_id = $1 AND status = $2
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_uploaded_files_project_status ON uploaded_files (project_id, status);

-- files a user uploaded: WHERE uploaded_by = $1
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_uploaded_files_uploaded_by ON uploaded_files (uploaded_by);

-- audit indexes

-- a user's audit trail, newest first: WHERE user_id = $1 ORDER BY created_at DESC LIMIT 50
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_user_created ON audit_logs (user_id, created_at DESC);

-- history of one resource: WHERE resource_type = $1 AND resource_id = $2
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_resource ON audit_logs (resource_type, resource_id);

-- user activity indexes

-- a user's recent activity: WHERE user_id = $1 ORDER BY created_at DESC LIMIT 50
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_user_activity_logs_user_created ON user_activity_logs (user_id, created_at DESC);
