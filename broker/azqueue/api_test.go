package azqueue

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// retiredSDKs are the packages of the retired Azure Storage SDK for Go that
// the broker uses inside: none of their types may appear in its exported
// API, so that moving to the maintained SDK breaks no user.
var retiredSDKs = []string{"github.com/Azure/azure-storage-queue-go", "github.com/Azure/azure-pipeline-go"}

// TestExportedAPIMentionsNoRetiredSDKType fails when an exported
// identifier of the package (a function's or method's parameters and
// results, a type's definition and exported fields, a variable's or
// constant's type) names a type of retiredSDKs.
func TestExportedAPIMentionsNoRetiredSDKType(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		retired := retiredImports(f)
		for _, use := range exportedSDKUses(f, retired) {
			t.Errorf("%s: exported %s mentions %s", fset.Position(use.pos), use.exported, use.sdkType)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no source file checked")
	}
}

// retiredImports returns the names under which f imports a retired SDK
// package.
func retiredImports(f *ast.File) map[string]bool {
	names := make(map[string]bool)
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		for _, sdk := range retiredSDKs {
			if path == sdk || strings.HasPrefix(path, sdk+"/") {
				name := filepath.Base(path)
				if imp.Name != nil {
					name = imp.Name.Name
				}
				names[name] = true
			}
		}
	}
	return names
}

type sdkUse struct {
	pos      token.Pos
	exported string
	sdkType  string
}

// exportedSDKUses finds the retired types in f's exported declarations.
func exportedSDKUses(f *ast.File, retired map[string]bool) []sdkUse {
	var uses []sdkUse
	find := func(exported string, node ast.Node) {
		if node == nil {
			return
		}
		ast.Inspect(node, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && retired[x.Name] {
					uses = append(uses, sdkUse{pos: sel.Pos(), exported: exported, sdkType: x.Name + "." + sel.Sel.Name})
				}
			}
			return true
		})
	}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Name.IsExported() && (d.Recv == nil || exportedReceiver(d.Recv)) {
				find(d.Name.Name, d.Type)
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() {
						find(s.Name.Name, exportedPart(s.Type))
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() {
							find(n.Name, s.Type)
							for _, v := range s.Values {
								find(n.Name, v)
							}
						}
					}
				}
			}
		}
	}
	return uses
}

// exportedReceiver reports whether a method's receiver type is exported.
func exportedReceiver(recv *ast.FieldList) bool {
	t := recv.List[0].Type
	if star, ok := t.(*ast.StarExpr); ok {
		t = star.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// exportedPart returns a type with a struct's unexported fields left out.
func exportedPart(t ast.Expr) ast.Node {
	st, ok := t.(*ast.StructType)
	if !ok {
		return t
	}
	fields := &ast.FieldList{}
	for _, f := range st.Fields.List {
		exported := len(f.Names) == 0 // embedded: its type is its name
		for _, n := range f.Names {
			exported = exported || n.IsExported()
		}
		if exported {
			fields.List = append(fields.List, f)
		}
	}
	return fields
}
