import json, sys
for f in json.load(open(sys.argv[1])):
    print(f["severity"], f["id"], "|", f["finding"][:150])
