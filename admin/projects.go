package admin

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
	Limits    keys.Shown        `json:"limits"`
	Budget    *keys.Budget      `json:"budget"`
	Metadata  map[string]string `json:"metadata"`
	Source    string            `json:"source"` // config or api
	CreatedAt *time.Time        `json:"created_at"`
	Spend     *usage.MonthSpend `json:"spend,omitempty"`
}

func projectViewOf(p *keys.Project) projectView {
	v := projectView{ID: p.ID, Object: "project", Name: p.Name, Limits: p.Limits.Shown(), Budget: p.Budget,
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

// withProjects answers 501 for h where there is no project store.
func (a *API) withProjects(h Handler) Handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		if a.projects == nil {
			return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this gateway has no project store"}
		}
		return h(w, r, ps)
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
func (a *API) createProject(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	pr, err := decodeProjectRequest(r, a.maxBody)
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
	if err := a.projects.CreateProject(r.Context(), p); err != nil {
		return projectError(err)
	}
	a.log.Info("project created", "project", p.ID, "name", p.Name)
	return httpapi.WriteJSON(w, http.StatusCreated, a.withSpend(r.Context(), projectViewOf(p)))
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ps := a.projects.Projects()
	list := struct {
		Object string        `json:"object"`
		Data   []projectView `json:"data"`
	}{Object: "list", Data: make([]projectView, 0, len(ps))}
	spend := a.projectSpend(r.Context(), "")
	for _, p := range ps {
		v := projectViewOf(p)
		if spend != nil {
			v.Spend = usage.SpendOf(time.Now().UTC().Format("2006-01"), spend[p.ID])
		}
		list.Data = append(list.Data, v)
	}
	return httpapi.WriteJSON(w, http.StatusOK, list)
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	p, ok := a.projects.Project(ps.ByName("id"))
	if !ok {
		return projectError(keys.ErrNotFound)
	}
	return httpapi.WriteJSON(w, http.StatusOK, a.withSpend(r.Context(), projectViewOf(p)))
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	pr, err := decodeProjectRequest(r, a.maxBody)
	if err != nil {
		return err
	}
	if pr.ID != nil && *pr.ID != ps.ByName("id") {
		return apierr.BadRequest("id", "a project's id cannot change")
	}
	p, err := a.projects.UpdateProject(r.Context(), ps.ByName("id"), pr.apply)
	if err != nil {
		return projectError(err)
	}
	a.log.Info("project updated", "project", p.ID)
	return httpapi.WriteJSON(w, http.StatusOK, a.withSpend(r.Context(), projectViewOf(p)))
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	id := ps.ByName("id")
	if err := a.projects.DeleteProject(r.Context(), id); err != nil {
		return projectError(err)
	}
	a.log.Info("project deleted", "project", id)
	return httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "project.deleted", "deleted": true})
}

// projectSpend is this month's ledger by project (only: one project);
// nil when it cannot be read, which leaves the spend out of the answer.
func (a *API) projectSpend(ctx context.Context, only string) map[string]usage.Row {
	if a.usage == nil {
		return nil
	}
	now := time.Now().UTC()
	rows, err := a.usage.ByProject(ctx, time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), only)
	if err != nil {
		return nil
	}
	return rows
}

func (a *API) withSpend(ctx context.Context, v projectView) projectView {
	if spend := a.projectSpend(ctx, v.ID); spend != nil {
		v.Spend = usage.SpendOf(time.Now().UTC().Format("2006-01"), spend[v.ID])
	}
	return v
}
