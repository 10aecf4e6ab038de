-- wrk script: POSTs one fixed TimeStampReq (DER) over keep-alive connections.
-- The request file comes from STAMPD_QUERY (bench/wrk/run.sh makes it with openssl).
local path = os.getenv("STAMPD_QUERY")
local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
-- STAMPD_CONTENT_TYPE: another media type (application/octet-stream for an Authenticode
-- request, whose file is then its base64 text).
wrk.headers["Content-Type"] = os.getenv("STAMPD_CONTENT_TYPE") or "application/timestamp-query"
-- STAMPD_CLOSE=1: one request per connection (a full TLS handshake each, over HTTPS).
if os.getenv("STAMPD_CLOSE") then
  wrk.headers["Connection"] = "close"
end
