module github.com/poc-go-micro/poc-go-micro/tools

go 1.26

require (
	github.com/golang/protobuf v1.4.2
	github.com/micro/micro/v2 v2.9.3
)

require (
	google.golang.org/genproto v0.0.0-20191216164720-4f79533eabd1 // indirect
	google.golang.org/protobuf v1.23.0 // indirect
)
