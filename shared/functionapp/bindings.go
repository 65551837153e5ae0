package functionapp

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Binding is one entry of a function.json "bindings" array; only the keys
// the runtimes use are decoded.
type Binding struct {
	Type       string   `json:"type"`
	Direction  string   `json:"direction"`
	Name       string   `json:"name"`
	AuthLevel  string   `json:"authLevel,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	Route      string   `json:"route,omitempty"`
	QueueName  string   `json:"queueName,omitempty"`
	Connection string   `json:"connection,omitempty"`
	DataType   string   `json:"dataType,omitempty"`
}

// FunctionConfig is one function as function.json declares it.
type FunctionConfig struct {
	Name     string    `json:"-"`
	Bindings []Binding `json:"bindings"`
}

// Trigger returns the function's trigger binding.
func (f *FunctionConfig) Trigger() *Binding {
	for i := range f.Bindings {
		if strings.HasSuffix(f.Bindings[i].Type, "Trigger") {
			return &f.Bindings[i]
		}
	}
	return nil
}

// Methods returns the HTTP methods of an httpTrigger, upper case.
func (f *FunctionConfig) Methods() []string {
	t := f.Trigger()
	if t == nil {
		return nil
	}
	out := make([]string, len(t.Methods))
	for i, m := range t.Methods {
		out[i] = strings.ToUpper(m)
	}
	return out
}

// LoadFunctions reads every <dir>/<Name>/function.json in fsys, sorted by name.
func LoadFunctions(fsys fs.FS, dir string) ([]FunctionConfig, error) {
	matches, err := fs.Glob(fsys, path.Join(dir, "*", "function.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(matches)
	var out []FunctionConfig
	for _, m := range matches {
		b, err := fs.ReadFile(fsys, m)
		if err != nil {
			return nil, err
		}
		var fc FunctionConfig
		if err := json.Unmarshal(b, &fc); err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		fc.Name = path.Base(path.Dir(m))
		if fc.Trigger() == nil {
			return nil, fmt.Errorf("%s: no trigger binding", m)
		}
		out = append(out, fc)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no function.json under %s", dir)
	}
	return out, nil
}

// Check verifies that every configured function has a handler of the kind
// its trigger needs, and every handler a configuration.
func (r Registry) Check(fns []FunctionConfig) error {
	seen := map[string]bool{}
	for _, fc := range fns {
		seen[fc.Name] = true
		h, ok := r[fc.Name]
		if !ok {
			return fmt.Errorf("function %s has no handler", fc.Name)
		}
		trigger := fc.Trigger()
		if trigger == nil {
			return fmt.Errorf("function %s has no trigger", fc.Name)
		}
		switch t := trigger.Type; t {
		case "httpTrigger":
			if h.ActsOutside || h.StartsFromCarriedVersions {
				return fmt.Errorf("function %s is HTTP-triggered: ActsOutside and StartsFromCarriedVersions are for queue functions", fc.Name)
			}
			if h.HTTP == nil {
				return fmt.Errorf("function %s is HTTP-triggered but its handler is not", fc.Name)
			}
			// The host's default authLevel is function.
			anonymous := strings.EqualFold(trigger.AuthLevel, "anonymous")
			if h.Public && !anonymous {
				return fmt.Errorf("function %s is public but its function.json has authLevel %q: callers would need the platform's key; set anonymous", fc.Name, trigger.AuthLevel)
			}
			if !h.Public && anonymous {
				return fmt.Errorf("function %s needs an API key but its function.json has authLevel anonymous; set function so the platform's key guards it too", fc.Name)
			}
		case "serviceBusTrigger":
			if h.Queue == nil {
				return fmt.Errorf("function %s is queue-triggered but its handler is not", fc.Name)
			}
			if h.ActsOutside && h.StartsFromCarriedVersions {
				return fmt.Errorf("function %s acts outside the store, so it must read what it acts on, not start from carried versions", fc.Name)
			}
			if h.Reads != "" && trigger.QueueName != h.Reads {
				return fmt.Errorf("function %s: its function.json reads queue %q, but its handler reads %q", fc.Name, trigger.QueueName, h.Reads)
			}
		default:
			return fmt.Errorf("function %s: unsupported trigger %s", fc.Name, t)
		}
	}
	for name := range r {
		if !seen[name] {
			return fmt.Errorf("handler %s has no function.json", name)
		}
	}
	return nil
}

// RoutePattern converts a function route such as "deliveries/{id}" or
// "drones/{id:guid}" into a net/http pattern path under prefix ("api"):
// "/api/deliveries/{id}". Route constraints are dropped; handlers validate.
func RoutePattern(prefix, route string) string {
	segs := strings.Split(strings.Trim(route, "/"), "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			name := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
			if j := strings.IndexByte(name, ':'); j >= 0 {
				name = name[:j]
			}
			segs[i] = "{" + strings.TrimSuffix(name, "?") + "}"
		}
	}
	p := "/" + strings.Join(segs, "/")
	if prefix != "" {
		p = "/" + strings.Trim(prefix, "/") + p
	}
	return p
}
