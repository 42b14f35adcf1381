import os

os.write(1, b"raw bytes: \xff\xfe\xc3\x28 end\n")
os.write(2, b"\xff\xfe on stderr\n")
print("a lone surrogate printed: \udcff")
answer = llm_query("a lone surrogate sent to the host: \udcff and \udc80")
FINAL("a final answer with a lone surrogate: \udcff")
_report({"answer": answer})
