module github.com/poc-go-micro/poc-go-micro/tools/benchstat

go 1.26

require golang.org/x/perf v0.0.0-20240604174448-3b48cf0e0164

require github.com/aclements/go-moremath v0.0.0-20210112150236-f10218a38794 // indirect
