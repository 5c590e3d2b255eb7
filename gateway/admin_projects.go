package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/usage"
)

// ProjectAdmin creates and changes projects; those of the configuration
// are listed but not changed.
type ProjectAdmin interface {
	Projects() []*keys.Project
	Project(id string) (*keys.Project, bool)
	CreateProject(ctx context.Context, p *keys.Project) error
	UpdateProject(ctx context.Context, id string, change func(*keys.Project) error) (*keys.Project, error)
	DeleteProject(ctx context.Context, id string) error
}

// projectView is a project as the admin API shows it, with its spend this
// month (the ledger's).
type projectView struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Name      string            `json:"name"`
	Limits    keyLimits         `json:"limits"`
	Budget    *keys.Budget      `json:"budget"`
	Metadata  map[string]string `json:"metadata"`
	Source    string            `json:"source"` // config or api
	CreatedAt *time.Time        `json:"created_at"`
	Spend     *keySpend         `json:"spend,omitempty"`
}

func projectViewOf(p *keys.Project) projectView {
	v := projectView{ID: p.ID, Object: "project", Name: p.Name, Limits: ownLimits(p.Limits), Budget: p.Budget,
		Metadata: p.Metadata, Source: "api"}
	if p.Config {
		v.Source = "config"
	} else {
		v.CreatedAt = &p.CreatedAt
	}
	if v.Budget != nil && v.Budget.AlertAt == nil {
		b := *v.Budget
		b.AlertAt = keys.DefaultAlertAt
		v.Budget = &b
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	return v
}

// ownLimits shows a project's limits: null (or 0) is unlimited.
func ownLimits(l keys.Limits) keyLimits {
	v := func(x *int64) *int64 {
		if x == nil || *x <= 0 {
			return nil
		}
		return x
	}
	return keyLimits{RPM: v(l.RPM), TPM: v(l.TPM), TPD: v(l.TPD), Concurrency: v(l.Concurrency)}
}

// projectRequest is the body of a project's create or update; budget is
// read raw, so that null (remove) and absent (leave) differ.
type projectRequest struct {
	ID       *string                    `json:"id"`
	Name     *string                    `json:"name"`
	Limits   map[string]json.RawMessage `json:"limits"`
	Budget   json.RawMessage            `json:"budget"`
	Metadata *map[string]string         `json:"metadata"`
}

func decodeProjectRequest(r *http.Request, maxBody int64) (*projectRequest, error) {
	var pr projectRequest
	if err := decodeAdminBody(r, maxBody, &pr, "id, name, limits, budget, metadata"); err != nil {
		return nil, err
	}
	return &pr, nil
}

// apply writes the request's fields into p.
func (pr *projectRequest) apply(p *keys.Project) error {
	if pr.Name != nil {
		p.Name = *pr.Name
	}
	if pr.Metadata != nil {
		p.Metadata = *pr.Metadata
	}
	if err := applyLimits(&p.Limits, pr.Limits, "null or 0 for none"); err != nil {
		return err
	}
	return applyBudget(&p.Budget, pr.Budget)
}

// applyBudget reads a budget: an object, or null to remove it.
func applyBudget(dst **keys.Budget, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if string(raw) == "null" {
		*dst = nil
		return nil
	}
	var b keys.Budget
	if err := jsonobj.ExactNames("budget", raw, &b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return apierr.BadRequest("budget", `budget is {"monthly": USD, "alert_at": [fractions of it]}, or null for none: `+err.Error())
	}
	*dst = &b
	return nil
}

// projectRoutes registers /projects under an admin prefix.
func (s *Server) projectRoutes(r *httprouter.Router, prefix string) {
	for _, rt := range []struct {
		method, path string
		h            handlerFunc
	}{
		{"POST", "/projects", s.createProject}, {"GET", "/projects", s.listProjects},
		{"GET", "/projects/:id", s.getProject}, {"PATCH", "/projects/:id", s.updateProject},
		{"DELETE", "/projects/:id", s.deleteProject},
	} {
		h := rt.h
		s.add(r, rt.method, prefix+rt.path, "adm", s.admin(func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error {
			if s.projects == nil {
				return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this gateway has no project store"}
			}
			return h(w, r, ps, c)
		}))
	}
}

// projectError maps the registry's project errors to answers.
func projectError(err error) error {
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return &apierr.Error{Code: apierr.CodeNotFound, Param: "id", Message: "no such project"}
	case errors.Is(err, keys.ErrExists):
		return &apierr.Error{Code: apierr.CodeConflict, Param: "id", Message: "a project with this id exists"}
	case errors.Is(err, keys.ErrConfigured), errors.Is(err, keys.ErrInUse):
		return &apierr.Error{Code: apierr.CodeConflict, Message: err.Error()}
	}
	return adminError(err)
}

// createProject is POST /v1/admin/projects.
func (s *Server) createProject(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *call) error {
	pr, err := decodeProjectRequest(r, s.maxBody)
	if err != nil {
		return err
	}
	p := &keys.Project{} // without an id, the registry makes one
	if pr.ID != nil {
		p.ID = *pr.ID
	}
	if err := pr.apply(p); err != nil {
		return err
	}
	if err := s.projects.CreateProject(r.Context(), p); err != nil {
		return projectError(err)
	}
	s.log.Info("project created", "project", p.ID, "name", p.Name)
	return httpapi.WriteJSON(w, http.StatusCreated, s.withSpend(r.Context(), projectViewOf(p)))
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request, _ httprouter.Params, _ *call) error {
	ps := s.projects.Projects()
	list := struct {
		Object string        `json:"object"`
		Data   []projectView `json:"data"`
	}{Object: "list", Data: make([]projectView, 0, len(ps))}
	spend := s.projectSpend(r.Context(), "")
	for _, p := range ps {
		v := projectViewOf(p)
		if spend != nil {
			v.Spend = spendOf(spend[p.ID])
		}
		list.Data = append(list.Data, v)
	}
	return httpapi.WriteJSON(w, http.StatusOK, list)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params, _ *call) error {
	p, ok := s.projects.Project(ps.ByName("id"))
	if !ok {
		return projectError(keys.ErrNotFound)
	}
	return httpapi.WriteJSON(w, http.StatusOK, s.withSpend(r.Context(), projectViewOf(p)))
}

func (s *Server) updateProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params, _ *call) error {
	pr, err := decodeProjectRequest(r, s.maxBody)
	if err != nil {
		return err
	}
	if pr.ID != nil && *pr.ID != ps.ByName("id") {
		return apierr.BadRequest("id", "a project's id cannot change")
	}
	p, err := s.projects.UpdateProject(r.Context(), ps.ByName("id"), pr.apply)
	if err != nil {
		return projectError(err)
	}
	s.log.Info("project updated", "project", p.ID)
	return httpapi.WriteJSON(w, http.StatusOK, s.withSpend(r.Context(), projectViewOf(p)))
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params, _ *call) error {
	id := ps.ByName("id")
	if err := s.projects.DeleteProject(r.Context(), id); err != nil {
		return projectError(err)
	}
	s.log.Info("project deleted", "project", id)
	return httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "project.deleted", "deleted": true})
}

// projectSpend is this month's ledger by project (only: one project);
// nil when it cannot be read, which leaves the spend out of the answer.
func (s *Server) projectSpend(ctx context.Context, only string) map[string]usage.Row {
	if s.usageAdmin == nil {
		return nil
	}
	now := time.Now().UTC()
	start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	q := usage.BucketQuery{Start: start, End: start.AddDate(0, 1, 0), ByProject: true}
	if only != "" {
		q.Projects = []string{only}
	}
	rows, err := s.usageAdmin.Buckets(ctx, q)
	if err != nil {
		return nil
	}
	out := map[string]usage.Row{"": {}}
	for _, b := range rows {
		r := out[b.Project]
		r.AddRow(b.Row)
		out[b.Project] = r
	}
	return out
}

// spendOf is a month's row as the spend shown.
func spendOf(r usage.Row) *keySpend {
	return &keySpend{Period: time.Now().UTC().Format("2006-01"), Cost: r.Cost, Tokens: r.Prompt + r.Completion,
		Requests: r.Requests, Currency: "usd"}
}

func (s *Server) withSpend(ctx context.Context, v projectView) projectView {
	if spend := s.projectSpend(ctx, v.ID); spend != nil {
		v.Spend = spendOf(spend[v.ID])
	}
	return v
}
