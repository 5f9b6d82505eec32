module github.com/courierhq/courier/tools/observe

go 1.26.8
