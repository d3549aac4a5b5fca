package apikey_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestConstantTime checks the package source for the properties its timing
// safety rests on, since a unit test cannot time them reliably: secret-dependent
// bytes are compared only with crypto/subtle, and the verify loops over the
// active secrets have no early exit.
func TestConstantTime(t *testing.T) {
	t.Parallel()
	files := parsePackage(t)

	banned := map[string]bool{"bytes.Equal": true, "bytes.Compare": true, "reflect.DeepEqual": true, "slices.Equal": true}
	for name, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel := selectorName(call.Fun); banned[sel] {
					t.Errorf("%s calls %s: compare secrets with crypto/subtle", name, sel)
				}
			}
			return true
		})
	}

	verifiers := []string{"MatchSecret", "CheckV1"}
	for _, fn := range verifiers {
		decl := findFunc(files, fn)
		if decl == nil {
			t.Errorf("func %s not found", fn)
			continue
		}
		usesSubtle, loops := false, 0
		ast.Inspect(decl.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if selectorName(n.Fun) == "subtle.ConstantTimeCompare" {
					usesSubtle = true
				}
			case *ast.RangeStmt:
				loops++
				checkNoEarlyExit(t, fn, n.Body)
			case *ast.ForStmt:
				loops++
				checkNoEarlyExit(t, fn, n.Body)
			}
			return true
		})
		if !usesSubtle {
			t.Errorf("%s does not compare with subtle.ConstantTimeCompare", fn)
		}
		if loops == 0 {
			t.Errorf("%s has no loop over the active secrets", fn)
		}
	}
}

func checkNoEarlyExit(t *testing.T, fn string, body *ast.BlockStmt) {
	t.Helper()
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			t.Errorf("%s returns from inside its loop over secrets", fn)
		case *ast.BranchStmt:
			if n.Tok == token.BREAK || n.Tok == token.GOTO {
				t.Errorf("%s leaves its loop over secrets early (%s)", fn, n.Tok)
			}
		}
		return true
	})
}

func parsePackage(t *testing.T) map[string]*ast.File {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	return files
}

func findFunc(files map[string]*ast.File, name string) *ast.FuncDecl {
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == name {
				return fd
			}
		}
	}
	return nil
}

func selectorName(e ast.Expr) string {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	x, ok := sel.X.(*ast.Ident)
	if !ok {
		return ""
	}
	return x.Name + "." + sel.Sel.Name
}
